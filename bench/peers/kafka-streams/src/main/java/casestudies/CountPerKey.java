package casestudies;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * Count per key, the job of (b) in `casestudies bench streams`: one stream thread, the default
 * RocksDB store with its changelog, at-least-once. Reads `records` records of `topic` from the
 * beginning and prints one JSON line: records/s from the first record to the last, and the stream
 * thread's CPU per record meanwhile.
 *
 * <p>Arguments: bootstrap servers, topic, records, application id, state directory, commit
 * interval in ms (`default`: Kafka Streams' 30 s).
 */
public final class CountPerKey {
    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: CountPerKey <bootstrap> <topic> <records> <application id> <state dir> <commit ms|default>");
            System.exit(2);
        }
        String bootstrap = args[0];
        String topic = args[1];
        long records = Long.parseLong(args[2]);
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
        if (!args[5].equals("default")) {
            props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(args[5]));
        }
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        AtomicLong seen = new AtomicLong();
        long[] start = new long[2]; // wall ns, CPU ns of the stream thread at the first record
        long[] end = new long[2];
        CountDownLatch done = new CountDownLatch(1);

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(topic, Consumed.with(Serdes.String(), Serdes.ByteArray()))
                .peek((key, value) -> {
                    long n = seen.incrementAndGet();
                    if (n == 1) {
                        start[0] = System.nanoTime();
                        start[1] = threads.getCurrentThreadCpuTime();
                    } else if (n == records) {
                        end[0] = System.nanoTime();
                        end[1] = threads.getCurrentThreadCpuTime();
                        done.countDown();
                    }
                })
                .groupByKey()
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts"));

        try (KafkaStreams streams = new KafkaStreams(builder.build(), props)) {
            streams.start();
            done.await();
            double seconds = (end[0] - start[0]) / 1e9;
            double cpuMicros = (end[1] - start[1]) / 1e3;
            System.out.printf(
                    "{\"records\":%d,\"records_per_s\":%.0f,\"cpu_us_per_record\":%.2f}%n",
                    records - 1, (records - 1) / seconds, cpuMicros / (records - 1));
            System.out.flush();
            streams.close(Duration.ofSeconds(30));
        }
    }
}
