//! The probes that watch a booted replica: a console line, a TCP port, a command inside the
//! guest through its serial console. Each waits at most until its deadline and says what it saw.
//!
//! The VM of an isolated drill lives in a network namespace of its own, so the TCP probe
//! connects from a thread that joins that namespace (`setns` changes only the calling thread).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::Regex;

/// Where a booted drill VM can be watched.
pub struct Vm<'a> {
    /// Files holding the serial console: the boot command's output, and the serial log the
    /// boot command may write to `$REWIND_CONSOLE_LOG`.
    pub console: Vec<PathBuf>,
    /// The serial port's unix socket (`$REWIND_SERIAL`), for guest commands.
    pub serial: PathBuf,
    /// The boot command's pid (its network namespace is the VM's).
    pub pid: u32,
    /// Whether it still runs (a VM that exited will print nothing more).
    pub running: &'a dyn Fn() -> bool,
}

/// Everything the console printed so far.
pub fn console_text(vm: &Vm<'_>) -> String {
    vm.console
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first console line matching `re` before `deadline`; the error carries the console's tail.
pub fn console_line(vm: &Vm<'_>, re: &str, deadline: Instant) -> Result<String> {
    let re = Regex::new(re).with_context(|| format!("console regex {re:?}"))?;
    loop {
        // Read the running state first: a line printed just before the exit is still seen.
        let alive = (vm.running)();
        let text = console_text(vm);
        // (A serial console ends its lines with \r\n.)
        if let Some(l) = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .find(|l| re.is_match(l))
        {
            return Ok(l.to_string());
        }
        let why = if !alive {
            "the boot command exited"
        } else if Instant::now() >= deadline {
            "timed out"
        } else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        bail!(
            "no console line matches {:?} ({why}); console tail:\n{}",
            re.as_str(),
            tail(&text, 20)
        );
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Connect to 127.0.0.1:`port` until something answers or `deadline`; in the VM's network
/// namespace when `isolated`.
pub fn tcp_port(vm: &Vm<'_>, port: u16, isolated: bool, deadline: Instant) -> Result<String> {
    let ns = isolated.then(|| PathBuf::from(format!("/proc/{}/ns/net", vm.pid)));
    let left = deadline.saturating_duration_since(Instant::now());
    // A thread of its own: setns must not move a thread the daemon goes on using.
    std::thread::Builder::new()
        .name("drill-tcp".into())
        .spawn(move || connect_until(ns.as_deref(), port, Instant::now() + left))
        .context("starting the TCP probe thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the TCP probe thread panicked"))?
}

fn connect_until(ns: Option<&Path>, port: u16, deadline: Instant) -> Result<String> {
    if let Some(ns) = ns {
        let f = std::fs::File::open(ns)
            .with_context(|| format!("opening the VM's network namespace {}", ns.display()))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("joining the VM's network namespace {}", ns.display()))?;
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        let last = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => {
                return Ok(format!(
                    "{addr} answered{}",
                    if ns.is_some() {
                        " (in the VM's network namespace)"
                    } else {
                        ""
                    }
                ))
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("nothing answers on {addr}: {last}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Run `command` in the guest's shell on the serial console; Ok with its output when it exits
/// 0, an error with its output and status otherwise.
///
/// The shell is first asked to echo a computed marker (so the echo of what we typed cannot
/// match) until it answers; only then is the command sent, once.
pub fn guest_command(vm: &Vm<'_>, command: &str, deadline: Instant) -> Result<String> {
    let mut s = loop {
        match UnixStream::connect(&vm.serial) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline || !(vm.running)() => {
                bail!(
                    "cannot reach the guest's serial console at {} ({e}): the boot command must \
                     connect the serial port to $REWIND_SERIAL \
                     (-chardev socket,id=s,path=$REWIND_SERIAL,server=on,wait=off -serial chardev:s)",
                    vm.serial.display()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let nonce = rewind_linux::clock::now_ms() % 1_000_000;
    let mut seen = String::new();
    let ready = format!("rewind-drill-ready-{nonce}-2");
    let mut asked = Instant::now() - Duration::from_secs(10);
    while !seen.contains(&ready) {
        if Instant::now() >= deadline || !(vm.running)() {
            bail!(
                "the guest's shell did not answer on the serial console; it printed:\n{}",
                tail(&seen, 20)
            );
        }
        if asked.elapsed() >= Duration::from_secs(3) {
            s.write_all(format!("\necho rewind-drill-ready-{nonce}-$((1+1))\n").as_bytes())?;
            asked = Instant::now();
        }
        read_some(&mut s, &mut seen)?;
    }
    let start = seen.len();
    let re = Regex::new(&format!(r"rewind-drill-rc-{nonce}=(\d+)")).expect("a valid regex");
    s.write_all(format!("{command}; echo rewind-drill-rc-{nonce}=$?\n").as_bytes())?;
    loop {
        if let Some(c) = re.captures(&seen[start..]) {
            let rc: i32 = c[1].parse().unwrap_or(-1);
            let at = c.get(0).map_or(0, |m| m.start());
            let out = seen[start..start + at].replace('\r', "");
            // The first line is the shell echoing what we typed.
            let out = out.split_once('\n').map_or("", |(_, rest)| rest).trim_end();
            if rc == 0 {
                return Ok(out.to_string());
            }
            bail!("`{command}` exited {rc} in the guest; output:\n{out}");
        }
        if Instant::now() >= deadline || !(vm.running)() {
            bail!(
                "`{command}` did not finish in the guest; console:\n{}",
                tail(&seen[start..], 20)
            );
        }
        read_some(&mut s, &mut seen)?;
    }
}

fn read_some(s: &mut UnixStream, seen: &mut String) -> Result<()> {
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => bail!("the serial console closed"),
        Ok(n) => {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e).context("reading the serial console"),
    }
}

/// Ask qemu (QMP on `socket`) for a screenshot of the VM's display into `out` (PPM).
pub fn screendump(socket: &Path, out: &Path) -> Result<()> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("connecting to QMP at {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = std::io::BufReader::new(s.try_clone()?);
    let mut reply = |s: &mut UnixStream, cmd: Option<serde_json::Value>| -> Result<()> {
        if let Some(c) = cmd {
            s.write_all(format!("{c}\n").as_bytes())?;
        }
        loop {
            let mut line = String::new();
            if std::io::BufRead::read_line(&mut r, &mut line)? == 0 {
                bail!("QMP closed");
            }
            let v: serde_json::Value = serde_json::from_str(&line).context("QMP reply")?;
            if v.get("QMP").is_some() || v.get("return").is_some() {
                return Ok(());
            }
            if let Some(e) = v.get("error") {
                bail!("QMP: {e}");
            }
            // (Events: skip.)
        }
    };
    reply(&mut s, None)?;
    reply(
        &mut s,
        Some(serde_json::json!({"execute": "qmp_capabilities"})),
    )?;
    reply(
        &mut s,
        Some(serde_json::json!({"execute": "screendump", "arguments": {"filename": out}})),
    )?;
    Ok(())
}
