//! `rewind`: the admin CLI. It talks to `rewind-mtd`'s control API; tables by default, `--json`
//! for scripts. The commands are in `rewind_mtd::cli`.

fn main() {
    rewind_mtd::cli::main();
}
