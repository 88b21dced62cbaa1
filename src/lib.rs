
pub mod firewall;
