// Package e2e holds the end-to-end suite: the examples' use cases run
// through the whole platform (collector, Kafka, processor, scheduler,
// dispatcher, sink, ClickHouse, the APNs and FCM mocks and the in-app
// endpoint), each service the real engage binary, on the simulated clock,
// with every campaign's recipients and send times checked against an
// oracle that shares no code with the engine. See e2e_test.go.
package e2e
