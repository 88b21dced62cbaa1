pub mod firewall;
