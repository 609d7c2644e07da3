package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/kafkabus"
)

// kafkaConn is where the brokers are and how to reach them: TLS and SASL.
// Every command that talks to Kafka registers it (registerConn) and calls
// secure right after parsing its flags, before it makes any Kafka client.
type kafkaConn struct {
	brokers string
	sec     kafkabus.Security
}

// registerConn registers -kafka.brokers (with the command's own help) and
// the security flags, and returns the brokers flag's value.
func (k *kafkaConn) registerConn(fs *flag.FlagSet, brokersHelp string) *string {
	fs.StringVar(&k.brokers, "kafka.brokers", "", brokersHelp)
	fs.BoolVar(&k.sec.TLS, "kafka.tls", false, "connect to the Kafka brokers over TLS")
	fs.StringVar(&k.sec.CAFile, "kafka.tls-ca", "", "PEM file of the CA certificates that sign the brokers' certificates (with -kafka.tls; empty: the system's roots)")
	fs.StringVar(&k.sec.CertFile, "kafka.tls-cert", "", "PEM client certificate, for brokers that ask for one (with -kafka.tls-key)")
	fs.StringVar(&k.sec.KeyFile, "kafka.tls-key", "", "PEM private key of -kafka.tls-cert")
	fs.StringVar(&k.sec.ServerName, "kafka.tls-server-name", "", "name the brokers' certificates must carry (empty: the host of each broker address)")
	fs.StringVar(&k.sec.SASLMechanism, "kafka.sasl-mechanism", kafkabus.SASLNone, "SASL authentication with the brokers: none, PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.StringVar(&k.sec.User, "kafka.sasl-user", "", "SASL user")
	fs.StringVar(&k.sec.Password, "kafka.sasl-password", "", "SASL password: set it in the environment (ENGAGE_KAFKA_SASL_PASSWORD), not on the command line, where every user of the machine can read it")
	fs.BoolVar(&k.sec.AllowPlaintextSASL, "kafka.allow-plaintext-sasl", false, "allow -kafka.sasl-mechanism PLAIN without -kafka.tls (the password crosses the network readable)")
	return &k.brokers
}

// secure sets the process's Kafka security from the flags and, when TLS or
// SASL is on and brokers are given, checks once that the brokers accept
// the TLS handshake and the credentials: wrong ones end the command at
// start with an error that names them, not in a retry loop. Brokers that
// cannot be reached yet are not an error here: the services wait for them
// as they always have.
func (k *kafkaConn) secure(ctx context.Context) error {
	mech := strings.ToUpper(k.sec.SASLMechanism)
	if mech == kafkabus.SASLPlain && !k.sec.TLS && !k.sec.AllowPlaintextSASL {
		return errors.New("-kafka.sasl-mechanism PLAIN without -kafka.tls sends the password readable to anyone on the network: add -kafka.tls (and -kafka.tls-ca), or -kafka.allow-plaintext-sasl if that is really meant")
	}
	if err := kafkabus.Configure(k.sec); err != nil {
		return err
	}
	brokers := splitList(k.brokers)
	if len(brokers) == 0 || !k.sec.Enabled() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var ae *kafkabus.AuthError
	if err := kafkabus.CheckAuth(ctx, brokers); errors.As(err, &ae) {
		return err
	}
	return nil
}

// kafkaFlags are the Kafka settings the services that create the topics
// share (collect, demo): the connection and the topics' and producer's.
type kafkaFlags struct {
	kafkaConn
	partitions   int
	replication  int
	batchTimeout time.Duration
	compression  string
}

func (k *kafkaFlags) register(fs *flag.FlagSet) {
	k.registerConn(fs, "comma-separated Kafka bootstrap brokers; empty: an embedded in-process broker (demo only, nothing persists)")
	fs.IntVar(&k.partitions, "kafka.partitions", 8, "partitions of the platform's topics when they are created")
	fs.IntVar(&k.replication, "kafka.replication", 1, "replication factor of the platform's topics when they are created (3 in production)")
	fs.DurationVar(&k.batchTimeout, "kafka.batch-timeout", kafkabus.DefaultBatchTimeout, "how long a producer batch waits to fill")
	fs.StringVar(&k.compression, "kafka.compression", kafkabus.DefaultCompression, "producer compression: none, gzip, snappy, lz4, zstd")
}

// connect returns the brokers, starting the embedded one when none are set,
// and makes sure the platform's topics exist.
func (k *kafkaFlags) connect(ctx context.Context, log *slog.Logger) (brokers []string, stop func(), err error) {
	stop = func() {}
	brokers = splitList(k.brokers)
	if len(brokers) == 0 && k.sec.Enabled() {
		return nil, nil, errors.New("the Kafka TLS and SASL flags need -kafka.brokers (the embedded broker has neither)")
	}
	if err := k.secure(ctx); err != nil {
		return nil, nil, err
	}
	if len(brokers) == 0 {
		e, err := kafkabus.StartEmbedded(k.partitions)
		if err != nil {
			return nil, nil, err
		}
		brokers, stop = e.Brokers(), e.Close
		log.Warn("no -kafka.brokers: using an embedded in-process broker; data lives only as long as this process", "brokers", brokers)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	results, err := kafkabus.EnsureTopics(ctx, brokers, kafkabus.PlatformTopics(k.partitions, k.replication))
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("topics: %w", err)
	}
	for _, r := range results {
		if r.Problem != "" {
			log.Warn("topic", "topic", r.Name, "problem", r.Problem)
		}
	}
	return brokers, stop, nil
}
