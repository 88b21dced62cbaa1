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
}

impl Sampler {
    pub fn new(sysload_override: Option<f64>) -> Self {
        let mut sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_memory(MemoryRefreshKind::nothing().with_ram())
                .with_cpu(sysinfo::CpuRefreshKind::nothing().with_cpu_usage()),
        );
        sys.refresh_cpu_usage();
        Self {
            sys,
            sysload_override,
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
        Sample {
            cpu_percent: self.sys.global_cpu_usage(),
            memory_used_bytes: self.sys.used_memory(),
            memory_total_bytes: self.sys.total_memory(),
            load1,
            num_cpus,
            sysload: self.sysload_override.unwrap_or(measured),
            sysload_overridden: self.sysload_override.is_some(),
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
    }
}
