//! fio jobs, the baseline of every write and read bench, and the figures read from their JSON.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use super::tools;

/// Runs `fio --output-format=json ARGS` and returns its JSON report.
pub fn run(args: &[String], what: &str) -> Result<Value> {
    let out = tools::stdout_of(
        Command::new("fio").arg("--output-format=json").args(args),
        what,
    )?;
    // fio may print notes before the JSON document.
    let json = out.find('{').map_or("", |i| &out[i..]);
    serde_json::from_str(json).with_context(|| format!("{what}: reading fio's JSON report"))
}

/// `jobs[0].DIR.FIELD` of a fio report (DIR: `read` or `write`).
pub fn field(report: &Value, dir: &str, field: &str) -> Result<f64> {
    report["jobs"][0][dir][field]
        .as_f64()
        .with_context(|| format!("fio's report has no jobs[0].{dir}.{field}"))
}

/// `jobs[0].DIR.bw_bytes / 1e6`: MB/s.
pub fn mbs(report: &Value, dir: &str) -> Result<f64> {
    Ok(field(report, dir, "bw_bytes")? / 1e6)
}

/// The apply bench's baseline figures of one run.
pub struct ApplyBaseline {
    /// Sequential 1 MiB QD32 writes of incompressible bytes, MB/s.
    pub seq_mbs: f64,
    /// Random 4 KiB QD64 writes, MB/s and IOPS.
    pub rand_mbs: f64,
    pub rand_iops: f64,
    /// Sequential 1 MiB QD32 writes of about 3:1 compressible bytes (as the load generator's
    /// compressible payload), MB/s: the file system stores them as they are.
    pub comp_mbs: f64,
    /// p99 of random 4 KiB O_DIRECT reads at QD1 of the written file, ms.
    pub read_p99_ms: f64,
}

/// The apply bench's baseline, one run: sequential 1 MiB QD32 writes of `size` bytes, then random
/// 4 KiB QD64 writes over the same (now fully written) file, capped at `rand_seconds`, then
/// random 4 KiB reads of it for `read_seconds`; then the sequential writes again into a new file
/// with compressible bytes.
pub fn apply_baseline(
    file: &Path,
    size: u64,
    rand_seconds: u64,
    read_seconds: u64,
) -> Result<ApplyBaseline> {
    let _ = std::fs::remove_file(file);
    let common = [
        format!("--filename={}", file.display()),
        "--ioengine=io_uring".to_string(),
        "--direct=1".to_string(),
        format!("--size={size}"),
    ];
    let job = |name: &str, args: &[&str]| -> Vec<String> {
        let mut v = vec![format!("--name={name}")];
        v.extend(common.iter().cloned());
        v.extend(args.iter().map(|a| a.to_string()));
        v
    };
    let seq_args = ["--rw=write", "--bs=1M", "--iodepth=32", "--end_fsync=1"];
    let seq = run(&job("seq1m", &seq_args), "fio")?;
    let rand_runtime = format!("--runtime={rand_seconds}");
    let rand = run(
        &job(
            "rand4k",
            &[
                "--rw=randwrite",
                "--bs=4k",
                "--iodepth=64",
                &rand_runtime,
                "--randrepeat=0",
                "--end_fsync=1",
            ],
        ),
        "fio",
    )?;
    let file_arg = [
        format!("--filename={}", file.display()),
        "--ioengine=libaio".to_string(),
        "--direct=1".to_string(),
    ];
    let read_p99_ms = randread_p99_ms(&file_arg, size, read_seconds)?;
    let _ = std::fs::remove_file(file);
    // zstd -1 makes about 3:1 of the load generator's compressible payload; fio's
    // buffer_compress_percentage=67 makes buffers of about the same ratio.
    let mut comp_args = seq_args.to_vec();
    comp_args.extend(["--buffer_compress_percentage=67", "--refill_buffers"]);
    let comp = run(&job("comp1m", &comp_args), "fio")?;
    let _ = std::fs::remove_file(file);
    Ok(ApplyBaseline {
        seq_mbs: mbs(&seq, "write")?,
        rand_mbs: mbs(&rand, "write")?,
        rand_iops: field(&rand, "write", "iops")?,
        comp_mbs: mbs(&comp, "write")?,
        read_p99_ms,
    })
}

/// The p99 completion latency (ms) of random 4 KiB reads at queue depth 1 for `seconds` over the
/// first `size` bytes of what `target` names: a file or device (`--filename=F --direct=1
/// --ioengine=libaio`) or an NBD export (`--ioengine=nbd --uri=URI`). QD1, so each read's
/// latency is its own and not its place in a queue.
pub fn randread_p99_ms(target: &[String], size: u64, seconds: u64) -> Result<f64> {
    let mut args = vec!["--name=randread4k".to_string()];
    args.extend(target.iter().cloned());
    args.extend([
        "--rw=randread".into(),
        "--bs=4k".into(),
        "--iodepth=1".into(),
        "--time_based".into(),
        format!("--runtime={seconds}"),
        format!("--size={size}"),
        "--randrepeat=0".into(),
        "--readonly".into(),
    ]);
    let report = run(&args, &format!("fio random reads of {}", target.join(" ")))?;
    report["jobs"][0]["read"]["clat_ns"]["percentile"]["99.000000"]
        .as_f64()
        .map(|ns| ns / 1e6)
        .context("fio's report has no jobs[0].read.clat_ns.percentile.99")
}

/// Sequential 1 MiB QD16 direct reads of the first `size` bytes of a block device, MB/s.
pub fn read_mbs(dev: &str, size: u64) -> Result<f64> {
    let args = [
        "--name=seqread".to_string(),
        format!("--filename={dev}"),
        "--ioengine=io_uring".into(),
        "--direct=1".into(),
        "--rw=read".into(),
        "--bs=1M".into(),
        "--iodepth=16".into(),
        format!("--size={size}"),
        "--readonly".into(),
    ];
    mbs(&run(&args, &format!("fio read of {dev}"))?, "read")
}

/// Direct libaio writes for `seconds` to a device (seq: 1 MiB QD32; rand: 4 KiB QD64), MB/s.
pub fn write_mbs(dev: &str, rand: bool, seconds: u64, size: u64) -> Result<f64> {
    let job = if rand {
        ["--rw=randwrite", "--bs=4k", "--iodepth=64"]
    } else {
        ["--rw=write", "--bs=1M", "--iodepth=32"]
    };
    let mut args = vec![
        "--name=w".to_string(),
        format!("--filename={dev}"),
        "--ioengine=libaio".into(),
        "--direct=1".into(),
    ];
    args.extend(job.map(String::from));
    args.extend([
        "--time_based".into(),
        format!("--runtime={seconds}"),
        format!("--size={size}"),
    ]);
    mbs(&run(&args, &format!("fio on {dev}"))?, "write")
}

/// Random 4 KiB direct reads, QD64, for `seconds` over the first `size` bytes of a device: MB/s.
pub fn randread_mbs(dev: &str, seconds: u64, size: u64) -> Result<f64> {
    let args = [
        "--name=randread".to_string(),
        format!("--filename={dev}"),
        "--ioengine=libaio".into(),
        "--direct=1".into(),
        "--rw=randread".into(),
        "--bs=4k".into(),
        "--iodepth=64".into(),
        "--time_based".into(),
        format!("--runtime={seconds}"),
        format!("--size={size}"),
        "--readonly".into(),
    ];
    mbs(&run(&args, &format!("fio randread of {dev}"))?, "read")
}
