//! A minimal `log` backend: one line per record on stderr, with the time
//! since start, so a failed punch can be read back step by step.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

struct StderrLogger {
    start: Instant,
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let t = self.start.elapsed();
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warn",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        // A failed write to stderr has nowhere better to go.
        let _ = writeln!(
            std::io::stderr().lock(),
            "punchwire[{:>4}.{:03}] {level}: {}",
            t.as_secs(),
            t.subsec_millis(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Installs the logger at `level` (`Off` for `-q`).
pub fn init(level: log::LevelFilter) {
    let logger = LOGGER.get_or_init(|| StderrLogger {
        start: Instant::now(),
    });
    // Only fails if a logger is already set, which leaves that one in place.
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

/// Applies a subcommand's own `-v`/`-q` count on top of the global level:
/// negative = errors only, 0 = unchanged, 1 = debug, more = trace.
pub fn adjust(verbosity: i32) {
    match verbosity {
        i32::MIN..=-1 => log::set_max_level(log::LevelFilter::Error),
        0 => {}
        1 => log::set_max_level(log::LevelFilter::Debug),
        _ => log::set_max_level(log::LevelFilter::Trace),
    }
}
