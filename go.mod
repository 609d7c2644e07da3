module github.com/openengage/engage

go 1.26.8
