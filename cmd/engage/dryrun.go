package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
	"github.com/openengage/engage/segments/engine"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/dryrun"
	"github.com/openengage/engage/triggers/scheduler"
)

// campaignSet reads the app's stored campaigns and caps, and puts the given
// files in place of (or next to) them: what a dry run or an estimate runs.
// A file's campaign keeps the version of the stored one of its name (the
// same ids as live) unless its text differs.
func campaignSet(ctx context.Context, brokers []string, topic, app string, files []string, stored bool) ([]*triggers.Campaign, map[string]map[triggers.Channel]triggers.Caps, error) {
	store := scheduler.NewStore()
	if len(brokers) > 0 {
		if _, err := kafkabus.ReadPartition(ctx, brokers, topic, 0, func(m bus.Message) error {
			if _, err := store.Apply(m); err != nil {
				fmt.Fprintln(os.Stderr, "warning:", err)
			}
			return nil
		}); err != nil {
			return nil, nil, fmt.Errorf("read the campaigns from %s: %w", topic, err)
		}
	}
	set, _ := store.Current()
	byName := map[string]*triggers.Campaign{}
	sources := map[string]string{}
	for _, st := range store.Stored() {
		sources[st.App+"/"+st.Name] = st.Source
	}
	if stored {
		for _, c := range set.Campaigns {
			if c.App == app {
				byName[c.Name] = c
			}
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		c, err := triggers.Parse(f, data)
		if err != nil {
			return nil, nil, err
		}
		if c.App != app {
			return nil, nil, fmt.Errorf("%s: campaign of app %q, the dry run is of app %q (-app)", f, c.App, app)
		}
		c.Version = 0
		for _, s := range set.Campaigns {
			if s.App == c.App && s.Name == c.Name && sources[s.App+"/"+s.Name] == string(data) {
				c.Version = s.Version
			}
		}
		byName[c.Name] = c
	}
	out := make([]*triggers.Campaign, 0, len(byName))
	for _, c := range byName {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, set.Caps, nil
}

// parseWhen reads a -from or -to: RFC 3339, or a date (midnight UTC).
func parseWhen(flagName, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("-%s %q: give an RFC 3339 time (2026-11-01T00:00:00Z) or a date (2026-11-01)", flagName, v)
}

// runDryRun is `engage campaigns dry-run [FILE...] -app A -from … -to …`.
func runDryRun(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("campaigns dry-run")
	var kconn kafkaConn
	brokers := kconn.registerConn(fs, "comma-separated Kafka bootstrap brokers (required: segments, campaigns and caps are read from the configuration topic)")
	topic := fs.String("config.topic", kafkabus.TopicConfig, "configuration topic")
	tags := fs.String("tags.topic", kafkabus.TopicTags, "tags topic (source kafka)")
	app := fs.String("app", "", "the app (default: the first file's)")
	source := fs.String("source", "kafka", "where the records come from: kafka (the tags topic, while it holds them) or clickhouse (the raw tags the sink wrote)")
	fromS := fs.String("from", "", "report decisions from this time (RFC 3339 or a date); the records before it still build the state")
	toS := fs.String("to", "", "report decisions before this time; empty: all")
	warmup := fs.Duration("warmup", 0, "read records from this long before -from (0: all the source holds): the segments' longest window is enough")
	stored := fs.Bool("stored", true, "replay the app's stored campaigns too (they compete for the caps); a file replaces the stored campaign of its name")
	asJSON := fs.Bool("json", false, "print every delivery and decision as a JSON line (scheduler.DeliveryMessage, DecisionMessage) instead of the report")
	var cf clickhouseFlags
	cf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := kconn.secure(ctx); err != nil {
		return err
	}
	from, err := parseWhen("from", *fromS)
	if err != nil {
		return err
	}
	to, err := parseWhen("to", *toS)
	if err != nil {
		return err
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return fmt.Errorf("-to %s is not after -from %s", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	bl := splitList(*brokers)
	if len(bl) == 0 {
		return errors.New("campaigns dry-run: give -kafka.brokers (or ENGAGE_KAFKA_BROKERS)")
	}
	files := fs.Args()
	if *app == "" {
		if len(files) == 0 {
			return errors.New("campaigns dry-run: give campaign files, or -app to replay the app's stored campaigns")
		}
		data, err := os.ReadFile(files[0])
		if err != nil {
			return err
		}
		c, err := triggers.Parse(files[0], data)
		if err != nil {
			return err
		}
		*app = c.App
	}
	camps, caps, err := campaignSet(ctx, bl, *topic, *app, files, *stored)
	if err != nil {
		return err
	}
	if len(camps) == 0 {
		return fmt.Errorf("campaigns dry-run: app %q has no campaign to replay", *app)
	}
	segStore, err := followSegments(ctx, bl, *topic)
	if err != nil {
		return err
	}
	segSet, _ := segStore.Current()
	var segs []*segments.Segment
	for _, s := range segSet.Segs {
		if s.App == *app {
			segs = append(segs, s)
		}
	}
	since := time.Time{}
	if *warmup > 0 && !from.IsZero() {
		since = from.Add(-*warmup)
	}
	parts := map[int][]dryrun.Input{}
	switch *source {
	case "kafka":
		n, err := kafkabus.Partitions(ctx, bl)
		if err != nil {
			return err
		}
		np, ok := n[*tags]
		if !ok {
			return fmt.Errorf("campaigns dry-run: topic %s does not exist", *tags)
		}
		for p := range np {
			if _, err := kafkabus.ReadPartition(ctx, bl, *tags, p, func(m bus.Message) error {
				if !strings.HasPrefix(string(m.Key), *app+"/") {
					return nil
				}
				r := &tag.Record{}
				if err := r.UnmarshalBinary(m.Value); err != nil || r.AppID != *app {
					return nil // the processor skips it too
				}
				if !to.IsZero() && r.Time.After(to) || !since.IsZero() && r.Time.Before(since) {
					return nil
				}
				parts[p] = append(parts[p], dryrun.Input{Partition: p, Offset: m.Offset, Record: r})
				return nil
			}); err != nil {
				return fmt.Errorf("read %s partition %d: %w", *tags, p, err)
			}
		}
	case "clickhouse":
		if cf.addr == "" {
			return errors.New("campaigns dry-run -source clickhouse: give -clickhouse.addr")
		}
		chCfg := cf.config()
		conn, _, err := clickhouse.Open(ctx, chCfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		var ps []uint32
		rows, err := conn.Query(ctx, "SELECT DISTINCT kafka_partition FROM "+chCfg.Database+".tags WHERE app = ?", *app)
		if err != nil {
			return fmt.Errorf("partitions of app %q in ClickHouse: %w", *app, err)
		}
		for rows.Next() {
			var p uint32
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return err
			}
			ps = append(ps, p)
		}
		rows.Close()
		h := clickhouse.NewHistoryReader(conn, chCfg.Database)
		for _, p := range ps {
			err := h.Read(ctx, int(p), engine.HistoryQuery{App: *app, Before: math.MaxInt64, Since: since}, func(_ string, recs []engine.HistoryRecord) error {
				for _, hr := range recs {
					if !to.IsZero() && hr.Record.Time.After(to) {
						continue
					}
					parts[int(p)] = append(parts[int(p)], dryrun.Input{Partition: int(p), Offset: hr.Offset, Record: hr.Record})
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("read partition %d from ClickHouse: %w", p, err)
			}
		}
	default:
		return fmt.Errorf("-source %q: give kafka or clickhouse", *source)
	}
	res, err := dryrun.Run(dryrun.Options{Segments: segs, Campaigns: camps, Caps: caps, From: from, To: to}, parts)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for i := range res.Deliveries {
			if err := enc.Encode(struct {
				Delivery scheduler.DeliveryMessage `json:"delivery"`
			}{scheduler.FromDelivery(&res.Deliveries[i])}); err != nil {
				return err
			}
		}
		for i := range res.Decisions {
			if err := enc.Encode(struct {
				Decision scheduler.DecisionMessage `json:"decision"`
			}{scheduler.FromDecision(&res.Decisions[i])}); err != nil {
				return err
			}
		}
		return nil
	}
	return dryRunReport(stdout, *app, *source, camps, res, from, to)
}

// dryRunReport prints, per campaign, the decisions per day and outcome
// and the sends per variant: what a marketer checks before saving.
func dryRunReport(w io.Writer, app, source string, camps []*triggers.Campaign, res *dryrun.Result, from, to time.Time) error {
	span := "everything the source holds"
	if !from.IsZero() || !to.IsZero() {
		span = fmt.Sprintf("%s to %s", orOpen(from, "the start"), orOpen(to, "the end"))
	}
	fmt.Fprintf(w, "Dry run of app %s over %s: %d records from %s, %d segment changes. Nothing was sent.\n", app, span, res.Records, source, res.Changes)
	outcomes := []triggers.Outcome{triggers.OutcomeSent, triggers.OutcomeDeferred, triggers.OutcomeControl, triggers.OutcomeCapped, triggers.OutcomeOutranked,
		triggers.OutcomeQuiet, triggers.OutcomeRepeat, triggers.OutcomeExpired, triggers.OutcomeLeft, triggers.OutcomeNoSample, triggers.OutcomeSkipped, triggers.OutcomeEnded}
	for _, c := range camps {
		days := map[string]map[triggers.Outcome]int{}
		var dayList []string
		for _, d := range res.Decisions {
			if d.Campaign != c.Name {
				continue
			}
			day := d.Time.UTC().Format(time.DateOnly)
			if days[day] == nil {
				days[day] = map[triggers.Outcome]int{}
				dayList = append(dayList, day)
			}
			days[day][d.Outcome]++
		}
		sort.Strings(dayList)
		variants := map[string]int{}
		devices := map[string]bool{}
		for _, d := range res.Deliveries {
			if d.Campaign == c.Name {
				variants[d.Variant]++
				devices[d.DeviceID] = true
			}
		}
		fmt.Fprintf(w, "\ncampaign %s (%s, %s): %d sends to %d devices\n", c.Name, c.What.Channel, c.When.Kind, sum(variants), len(devices))
		if len(dayList) == 0 {
			fmt.Fprintln(w, "  no decision in the window")
			continue
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
		var used []triggers.Outcome
		for _, o := range outcomes {
			for _, day := range dayList {
				if days[day][o] > 0 {
					used = append(used, o)
					break
				}
			}
		}
		fmt.Fprint(tw, "  day (UTC)\t")
		for _, o := range used {
			fmt.Fprintf(tw, "%s\t", o)
		}
		fmt.Fprintln(tw)
		for _, day := range dayList {
			fmt.Fprintf(tw, "  %s\t", day)
			for _, o := range used {
				fmt.Fprintf(tw, "%d\t", days[day][o])
			}
			fmt.Fprintln(tw)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(c.Who.Variants) > 0 {
			names := make([]string, 0, len(variants))
			for v := range variants {
				names = append(names, v)
			}
			sort.Strings(names)
			var parts []string
			for _, v := range names {
				parts = append(parts, fmt.Sprintf("%s %d", v, variants[v]))
			}
			fmt.Fprintf(w, "  sends per variant: %s\n", strings.Join(parts, ", "))
		}
	}
	return nil
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func orOpen(t time.Time, open string) string {
	if t.IsZero() {
		return open
	}
	return t.Format(time.RFC3339)
}

// runEstimate is `engage campaigns estimate FILE -api URL`: the audience
// now, exactly: the members of the campaign's segments (from the segments
// API of `engage process`), less its exclusions, through the same
// assignment the scheduler makes (sample, control group, variants).
func runEstimate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("campaigns estimate")
	api := fs.String("api", "http://127.0.0.1:8082", "base URL of the segments API (engage process -addr)")
	token := fs.String("api.token", "", "bearer token of the segments API (or ENGAGE_API_TOKEN)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("campaigns estimate: give one campaign file")
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	c, err := triggers.Parse(fs.Arg(0), data)
	if err != nil {
		return err
	}
	members := func(seg string) (map[string]bool, error) {
		u := strings.TrimRight(*api, "/") + "/v1/segments/" + url.PathEscape(c.App) + "/" + url.PathEscape(seg) + "/members"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		if *token != "" {
			req.Header.Set("Authorization", "Bearer "+*token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("members of segment %q: %w", seg, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return nil, fmt.Errorf("members of segment %q: %s: %s", seg, resp.Status, strings.TrimSpace(string(body)))
		}
		if m := resp.Header.Get("Engage-Missing-Partitions"); m != "" {
			return nil, fmt.Errorf("members of segment %q: partitions %s did not answer (an instance is restoring or down): try again", seg, m)
		}
		out := map[string]bool{}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if id := sc.Text(); id != "" {
				out[id] = true
			}
		}
		return out, sc.Err()
	}
	var audience map[string]bool
	for _, seg := range c.Who.Segments {
		m, err := members(seg)
		if err != nil {
			return err
		}
		if audience == nil {
			audience = m
			continue
		}
		for id := range audience {
			if !m[id] {
				delete(audience, id)
			}
		}
	}
	for _, seg := range c.Who.Exclude {
		m, err := members(seg)
		if err != nil {
			return err
		}
		for id := range m {
			delete(audience, id)
		}
	}
	sampled, control := 0, 0
	variants := map[string]int{}
	for id := range audience {
		as := triggers.Assign(c, id)
		switch {
		case !as.InSample:
		case as.Control:
			sampled++
			control++
		default:
			sampled++
			name := "(one message)"
			if as.Variant >= 0 && as.Variant < len(c.Who.Variants) {
				name = c.Who.Variants[as.Variant].Name
			}
			variants[name]++
		}
	}
	fmt.Fprintf(stdout, "campaign %s of app %s, now:\n", c.Name, c.App)
	fmt.Fprintf(stdout, "  in the audience (%s", strings.Join(c.Who.Segments, " and "))
	if len(c.Who.Exclude) > 0 {
		fmt.Fprintf(stdout, ", not %s", strings.Join(c.Who.Exclude, " nor "))
	}
	fmt.Fprintf(stdout, "): %d devices\n  in the sample: %d\n  control group (never sent): %d\n", len(audience), sampled, control)
	names := make([]string, 0, len(variants))
	for v := range variants {
		names = append(names, v)
	}
	sort.Strings(names)
	for _, v := range names {
		fmt.Fprintf(stdout, "  would get %s: %d\n", v, variants[v])
	}
	fmt.Fprintln(stdout, "Frequency caps, quiet hours, repeat rules and timing are applied at send time: `engage campaigns dry-run` shows their effect on past data.")
	return nil
}
