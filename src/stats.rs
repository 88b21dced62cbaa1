//! Node statistics: CPU use, memory, 1-minute load and sysload (load / CPUs, LiveKit's definition).

use serde::Serialize;
use sysinfo::{MemoryRefreshKind, RefreshKind, System};

/// One sample.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Sample {
    /// Whole-host CPU use in percent (0..100).
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub load1: f64,
    pub num_cpus: usize,
    /// `load1 / num_cpus`, or the configured override.
    pub sysload: f64,
    /// True when `sysload` comes from `node.sysload_override` (a test/drill knob).
    pub sysload_overridden: bool,
}

/// Keeps a `sysinfo::System` between samples (CPU use needs two readings).
pub struct Sampler {
    sys: System,
    sysload_override: Option<f64>,
    override_file: Option<std::path::PathBuf>,
}

/// Name of the drill file in the runtime directory: when it holds a number, that number is
/// reported as the node's sysload (lets an operator or the lab drain a node of new rooms
/// without restarting it; `rm` it to return to the measured value).
pub const SYSLOAD_OVERRIDE_FILE: &str = "sysload-override";

impl Sampler {
    pub fn new(sysload_override: Option<f64>) -> Self {
        Self::with_override_file(sysload_override, None)
    }

    /// Like [`Sampler::new`], also reading `file` (if present) at every sample.
    pub fn with_override_file(
        sysload_override: Option<f64>,
        file: Option<std::path::PathBuf>,
    ) -> Self {
        let mut sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_memory(MemoryRefreshKind::nothing().with_ram())
                .with_cpu(sysinfo::CpuRefreshKind::nothing().with_cpu_usage()),
        );
        sys.refresh_cpu_usage();
        Self {
            sys,
            sysload_override,
            override_file: file,
        }
    }

    pub fn sample(&mut self) -> Sample {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        let load1 = System::load_average().one;
        let num_cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let measured = sysload(load1, num_cpus);
        let from_file = self
            .override_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0);
        let overridden = from_file.or(self.sysload_override);
        Sample {
            cpu_percent: self.sys.global_cpu_usage(),
            memory_used_bytes: self.sys.used_memory(),
            memory_total_bytes: self.sys.total_memory(),
            load1,
            num_cpus,
            sysload: overridden.unwrap_or(measured),
            sysload_overridden: overridden.is_some(),
        }
    }
}

/// LiveKit's sysload: 1-minute load average divided by the CPU count.
pub fn sysload(load1: f64, num_cpus: usize) -> f64 {
    load1 / num_cpus.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysload_definition() {
        assert_eq!(sysload(1.4, 2), 0.7);
        assert_eq!(sysload(3.0, 0), 3.0);
    }

    #[test]
    fn sample_is_sane_and_override_applies() {
        let mut s = Sampler::new(None);
        let a = s.sample();
        assert!(a.memory_total_bytes > 0 && a.num_cpus >= 1);
        assert!(!a.sysload_overridden);
        let mut s = Sampler::new(Some(0.95));
        let b = s.sample();
        assert_eq!(b.sysload, 0.95);
        assert!(b.sysload_overridden);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(SYSLOAD_OVERRIDE_FILE);
        let mut s = Sampler::with_override_file(None, Some(f.clone()));
        assert!(!s.sample().sysload_overridden);
        std::fs::write(&f, "2.5\n").unwrap();
        assert_eq!(s.sample().sysload, 2.5);
        std::fs::write(&f, "garbage").unwrap();
        assert!(!s.sample().sysload_overridden);
    }
}
