//! CPU time, for the figure that says which side of a run was the limit: CPU per delivery for
//! the bench itself (`getrusage`, every thread) and for the server when its PID is given
//! (`/proc/PID/stat`, which `ps` and `top` read too), over the same stretch of the run.

use std::io;
use std::time::{Duration, Instant};

/// This process's CPU time so far, user and system, all threads.
pub fn own() -> Duration {
    // SAFETY: getrusage fills the struct it is given and reads nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Another process's CPU time so far, user and system (`utime` and `stime` in its stat line).
pub fn of_process(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |at: usize| fields.get(at).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("cannot read /proc/{pid}/stat")));
    };
    // SAFETY: sysconf reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos((utime + stime) * 1_000_000_000 / per_second))
}

/// Cores that `threads` bench threads can keep busy: no more than this process may run on.
pub fn usable_cores(threads: usize) -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(threads)
}

/// CPU times and the delivery count at one moment of a run.
#[derive(Debug, Clone)]
pub struct Mark {
    pub at: Instant,
    pub own: Duration,
    /// Each server process's CPU time (`--server-pid`, in order).
    pub servers: Vec<Option<Duration>>,
    pub deliveries: u64,
}

impl Mark {
    pub fn now(server_pids: &[u32], deliveries: u64) -> Self {
        let servers = server_pids.iter().map(|&pid| of_process(pid).ok()).collect();
        Self { at: Instant::now(), own: own(), servers, deliveries }
    }

    /// All the server processes' CPU time together (None if one could not be read).
    pub fn server(&self) -> Option<Duration> {
        if self.servers.is_empty() {
            return None;
        }
        self.servers.iter().copied().sum()
    }
}

/// What the CPU did between two marks.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Bench CPU per delivery, in nanoseconds (None without deliveries).
    pub bench_ns_per_delivery: Option<f64>,
    /// Server CPU per delivery, in nanoseconds (None without `--server-pid` or deliveries):
    /// every process given, together.
    pub server_ns_per_delivery: Option<f64>,
    /// The same for each process given, in order.
    pub server_ns_per_delivery_each: Vec<Option<f64>>,
    /// The bench's CPU time over the wall time and the cores its threads could use: above 0.9,
    /// the bench may have been the limit.
    pub bench_core_use: f64,
    /// What the figures above came from (a `--processes` parent adds them up).
    pub bench_cpu: Duration,
    pub deliveries: u64,
}

impl Usage {
    pub fn between(start: &Mark, end: &Mark, cores: usize) -> Self {
        let deliveries = end.deliveries.saturating_sub(start.deliveries);
        let per_delivery =
            |cpu: Duration| (deliveries > 0).then(|| cpu.as_nanos() as f64 / deliveries as f64);
        let wall = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
        Self {
            bench_cpu: end.own.saturating_sub(start.own),
            deliveries,
            bench_ns_per_delivery: per_delivery(end.own.saturating_sub(start.own)),
            server_ns_per_delivery: start
                .server()
                .zip(end.server())
                .and_then(|(a, b)| per_delivery(b.saturating_sub(a))),
            server_ns_per_delivery_each: start
                .servers
                .iter()
                .zip(&end.servers)
                .map(|(a, b)| a.zip(*b).and_then(|(a, b)| per_delivery(b.saturating_sub(a))))
                .collect(),
            bench_core_use: end.own.saturating_sub(start.own).as_secs_f64() / wall / cores.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_cpu_reads_the_same_from_proc_and_getrusage() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(60) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let from_proc = of_process(std::process::id()).expect("/proc");
        let from_rusage = own();
        assert!(from_proc > Duration::ZERO, "spinning used CPU");
        // /proc counts in clock ticks (10 ms); getrusage in microseconds.
        assert!(from_rusage + Duration::from_millis(20) >= from_proc, "{from_rusage:?} vs {from_proc:?}");
        assert!(of_process(u32::MAX).is_err(), "no such process");
    }
}
