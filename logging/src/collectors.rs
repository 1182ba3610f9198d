//! **The real forwarders and collectors** — nobody here wrote them: rsyslog with `omkafka`,
//! collectd with `write_kafka`, and Prometheus (whose remote write goes to our
//! [`crate::remote_write_receiver`]), run as child processes with the configuration this case
//! study ships (`logging/config/`). The tests start them; so do the benchmark
//! (`logging bench forwarder`: rsyslog next to our forwarder) and the demo.
//!
//! | program | Debian package | file |
//! |---|---|---|
//! | `rsyslogd` → `application_logs` | `rsyslog-kafka` (and `rsyslog`) | [`rsyslog`], `config/rsyslog.conf` |
//! | `collectd` → `application_metrics` | `collectd-core` | [`collectd`], `config/collectd.conf` |
//! | `prometheus` → remote write → `application_metrics` | `prometheus` | [`prometheus`] |
//!
//! Each runs in a directory of its own (configuration, PID file, queues), never as the system's
//! service. [`child`] holds what they share: finding the program (an error names the package to
//! install), filling in a configuration template, starting, waiting and stopping (SIGTERM, as
//! an init system stops them; also when this process ends).

pub mod child;
pub mod collectd;
pub mod prometheus;
pub mod rsyslog;
