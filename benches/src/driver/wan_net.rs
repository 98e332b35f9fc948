//! The WAN bench's network: the agent's and the master target's network namespaces, each joined
//! to the bench's own (where the relay runs) by a veth pair, with `tc tbf` limiting the relay's
//! side of the target's pair, i.e. what the relay sends toward the target (ACKs coming back are
//! not limited). Names carry the bench's pid; everything is deleted on drop and, should the
//! bench end by a signal, by a cleanup hook.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::cleanup;
use super::tools;

/// A namespace and its veth pair: `outer_ip` on the bench's side, `inner_ip` inside.
#[derive(Clone, Debug)]
pub struct Ns {
    pub name: String,
    pub outer_if: String,
    pub inner_if: String,
    pub outer_ip: String,
    pub inner_ip: String,
}

/// The agent's side and the target's side.
pub struct WanNet {
    pub agent: Ns,
    pub target: Ns,
}

impl WanNet {
    /// Creates both namespaces; the relay-to-target link limited to `rate` (tc's syntax, e.g.
    /// `100mbit`).
    pub fn new(rate: &str) -> Result<WanNet> {
        let agent = Ns::named(0);
        let target = Ns::named(1);
        for ns in [&agent, &target] {
            let (name, outer) = (ns.name.clone(), ns.outer_if.clone());
            cleanup::add_hook(move || delete(&name, &outer));
        }
        let net = WanNet { agent, target };
        net.agent.create()?;
        net.target.create()?;
        ip(&[
            "tc",
            "qdisc",
            "add",
            "dev",
            &net.target.outer_if,
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "64kb",
            "latency",
            "200ms",
        ])?;
        Ok(net)
    }

    /// Bytes tc's tbf sent on the relay-to-target link so far (`tc -s qdisc`'s "Sent N bytes").
    pub fn wan_bytes_sent(&self) -> Result<u64> {
        let out = tools::stdout_of(
            Command::new("tc").args(["-s", "qdisc", "show", "dev", &self.target.outer_if]),
            "tc -s qdisc show",
        )?;
        parse_sent(&out).with_context(|| format!("no \"Sent N bytes\" in tc's output: {out}"))
    }
}

impl Drop for WanNet {
    fn drop(&mut self) {
        delete(&self.agent.name, &self.agent.outer_if);
        delete(&self.target.name, &self.target.outer_if);
    }
}

impl Ns {
    /// Names and a /30 in 10.0.0.0/8 unique to this process and `n` (0..4).
    fn named(n: u8) -> Ns {
        let pid = std::process::id();
        // (Interface names have at most 15 bytes.)
        let tag = format!("{:x}{n:x}", pid & 0xff_ffff);
        let base = ((pid & 0x3_ffff) << 4) | (u32::from(n & 3) << 2);
        let addr = |host: u32| std::net::Ipv4Addr::from((10 << 24) | base | host).to_string();
        Ns {
            name: format!("rwwan-{tag}"),
            outer_if: format!("rwwo{tag}"),
            inner_if: format!("rwwi{tag}"),
            outer_ip: addr(1),
            inner_ip: addr(2),
        }
    }

    fn create(&self) -> Result<()> {
        // A leftover of an earlier run with the same pid goes first.
        delete(&self.name, &self.outer_if);
        ip(&["ip", "netns", "add", &self.name])?;
        ip(&[
            "ip",
            "link",
            "add",
            &self.outer_if,
            "type",
            "veth",
            "peer",
            "name",
            &self.inner_if,
            "netns",
            &self.name,
        ])?;
        let cidr = |a: &str| format!("{a}/30");
        ip(&[
            "ip",
            "addr",
            "add",
            &cidr(&self.outer_ip),
            "dev",
            &self.outer_if,
        ])?;
        ip(&["ip", "link", "set", &self.outer_if, "up"])?;
        self.exec(&[
            "ip",
            "addr",
            "add",
            &cidr(&self.inner_ip),
            "dev",
            &self.inner_if,
        ])?;
        self.exec(&["ip", "link", "set", &self.inner_if, "up"])?;
        self.exec(&["ip", "link", "set", "lo", "up"])
    }

    /// `ip netns exec NAME ARGS...` as a command to add to (the program's pid is the child's:
    /// `ip` execs it).
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `args` inside the namespace.
    fn exec(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }
}

/// Runs a network command (`args[0]` is the program); an error with its stderr if it fails.
fn ip(args: &[&str]) -> Result<()> {
    tools::output(Command::new(args[0]).args(&args[1..]), &args.join(" ")).map(|_| ())
}

/// Deletes namespace `name` (and with it its veth end and so the pair) and, in case the move
/// into it never happened, the bench's end. Errors are ignored: it may be gone already.
fn delete(name: &str, outer_if: &str) {
    let quiet = |args: &[&str]| {
        let _ = Command::new("ip")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    };
    quiet(&["netns", "del", name]);
    quiet(&["link", "del", outer_if]);
}

/// The first `Sent N bytes` figure of `tc -s qdisc show` output.
fn parse_sent(out: &str) -> Option<u64> {
    let rest = &out[out.find("Sent ")? + 5..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Whether this machine can run the bench: root, `ip` and `tc`.
pub fn check() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the wan bench needs root (network namespaces, tc)");
    }
    tools::need_tool("ip", "iproute2")?;
    tools::need_tool("tc", "iproute2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_sent_bytes_are_read() {
        let out = "qdisc tbf 8001: root refcnt 2 rate 100Mbit burst 64Kb lat 200ms\n \
                   Sent 123456 bytes 789 pkt (dropped 0, overlimits 3 requeues 0)\n";
        assert_eq!(parse_sent(out), Some(123456));
        assert_eq!(parse_sent("qdisc noqueue 0: root"), None);
    }

    #[test]
    fn names_fit_interfaces_and_differ_per_side() {
        let (a, t) = (Ns::named(0), Ns::named(1));
        for n in [&a, &t] {
            assert!(n.outer_if.len() <= 15 && n.inner_if.len() <= 15, "{n:?}");
        }
        assert_ne!(a.name, t.name);
        assert_ne!(a.outer_ip, t.outer_ip);
    }
}
