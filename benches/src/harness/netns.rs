//! A network namespace joined to the test's own by a veth pair, with `tc tbf` on both ends (a
//! thin link), a partition that neither side sees closed (both ends set down: packets vanish,
//! no FIN, no RST), and processes started inside it. Deleted on drop: deleting the namespace
//! deletes its veth end, and with it the pair.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

use super::cmd::{run, run_ok};

/// A namespace with a veth pair: `outer_ip` here, `inner_ip` inside, a /30 between them.
pub struct NetNs {
    pub name: String,
    pub outer_if: String,
    pub inner_if: String,
    pub outer_ip: String,
    pub inner_ip: String,
}

impl NetNs {
    /// A namespace and veth pair with names and a 10.x.y.z/30 subnet unique to this process
    /// and `n`; both ends limited by `tc tbf` to `rate` (e.g. `50mbit`).
    pub fn new(n: u8, rate: &str) -> NetNs {
        let pid = std::process::id();
        // (Interface names have at most 15 bytes.)
        let tag = format!("{:x}{n:x}", pid & 0xff_ffff);
        // A /30 in 10.0.0.0/8 from the pid's low 18 bits and `n`.
        let base = ((pid & 0x3_ffff) << 4) | (u32::from(n & 3) << 2);
        let ip = |host: u32| std::net::Ipv4Addr::from((10 << 24) | base | host).to_string();
        let ns = NetNs {
            name: format!("rwtest-{tag}"),
            outer_if: format!("rwo{tag}"),
            inner_if: format!("rwi{tag}"),
            outer_ip: ip(1),
            inner_ip: ip(2),
        };
        // A leftover of an earlier run with the same pid goes first.
        let _ = run(Command::new("ip").args(["netns", "del", &ns.name]));
        run_ok(Command::new("ip").args(["netns", "add", &ns.name]));
        let ip_cmd = |args: &[&str]| run_ok(Command::new("ip").args(args));
        ip_cmd(&[
            "link",
            "add",
            &ns.outer_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.inner_if,
        ]);
        ip_cmd(&["link", "set", &ns.inner_if, "netns", &ns.name]);
        ip_cmd(&[
            "addr",
            "add",
            &format!("{}/30", ns.outer_ip),
            "dev",
            &ns.outer_if,
        ]);
        ip_cmd(&["link", "set", &ns.outer_if, "up"]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.inner_ip),
            "dev",
            &ns.inner_if,
        ]);
        ns.exec(&["ip", "link", "set", &ns.inner_if, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        let tbf = |dev: &str| {
            vec![
                "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "64kb",
                "latency", "200ms",
            ]
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<String>>()
        };
        let outer = tbf(&ns.outer_if);
        run_ok(Command::new(&outer[0]).args(&outer[1..]));
        let inner = tbf(&ns.inner_if);
        let inner: Vec<&str> = inner.iter().map(String::as_str).collect();
        ns.exec(&inner);
        ns
    }

    /// Runs `args` inside the namespace (`ip netns exec`), asserting success.
    pub fn exec(&self, args: &[&str]) {
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args),
        );
    }

    /// Cuts the link: both ends down. Packets are dropped silently; sockets stay open.
    pub fn partition(&self) {
        run_ok(Command::new("ip").args(["link", "set", &self.outer_if, "down"]));
        self.exec(&["ip", "link", "set", &self.inner_if, "down"]);
    }

    /// Restores the link (the addresses and routes come back with it).
    pub fn heal(&self) {
        self.exec(&["ip", "link", "set", &self.inner_if, "up"]);
        run_ok(Command::new("ip").args(["link", "set", &self.outer_if, "up"]));
    }

    /// Runs `f` on a thread whose network namespace is this one: processes it spawns are
    /// inside (only the network: mounts and files are shared, unlike `ip netns exec`).
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: setns(2) on a valid open descriptor with a constant flag; it changes
                // only this thread's network namespace, and this thread ends with the scope.
                let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in the namespace")
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]));
        // (Gone with the namespace's end; this only matters if the move into it failed.)
        let _ = run(Command::new("ip").args(["link", "del", &self.outer_if]));
    }
}
