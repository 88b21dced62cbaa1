//! Exit codes, chosen so systemd does the right thing (`RestartPreventExitStatus=78`).

/// Success or clean stop.
pub const OK: u8 = 0;
/// Runtime failure: LiveKit failed to start or keeps failing, Redis unreachable at start, a
/// bind error. systemd restarts the unit (`Restart=on-failure`).
pub const FAILURE: u8 = 1;
/// Command-line usage error (clap).
pub const USAGE: u8 = 2;
/// Configuration error (sysexits EX_CONFIG): restarting cannot help, so the unit names it in
/// `RestartPreventExitStatus=` and there is no restart loop.
pub const CONFIG: u8 = 78;
