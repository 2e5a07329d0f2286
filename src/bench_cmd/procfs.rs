//! What `/proc` says about processes and the machine: memory, CPU time, cores, pinning.

/// Resident memory of a process, in bytes.
pub(super) fn rss(pid: u32) -> u64 {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:") * 1024
}

/// Proportional memory of a process, in bytes: its own pages plus its share of pages it
/// shares with others (the binary's, among nodes of one machine). Summed over processes,
/// it is the memory they take together, which RSS overstates.
pub(super) fn pss(pid: u32) -> u64 {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:") * 1024
}

/// The number on the line of `file` that starts with `key` (a count of KiB in the
/// `/proc` files that hold them); 0 if there is none.
fn kib_field(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process, in seconds.
pub(super) fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Holds processes `pids` to CPUs `cpus`: every thread each already has (affinity is per
/// thread, so the process id alone would pin only its main thread), and the threads and
/// children started later, which inherit it. Best effort: a machine that refuses leaves
/// the processes where they were.
pub(super) fn pin_all(pids: &[u32], cpus: &[usize]) {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).ok();
    }
    for &p in pids {
        let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{p}/task"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let main = i32::try_from(p).ok();
        for tid in tids.into_iter().chain(main) {
            sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set).ok();
        }
    }
}

/// A line about this machine: CPU model and cores.
pub(super) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpu}, {} cores", cores())
}
