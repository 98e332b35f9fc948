//! `rewind_build_info`: which program and version answers (value 1, the labels are the facts).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::Family;

/// The `rewind_build_info{component, version}` collector.
#[derive(Debug)]
pub struct BuildInfo {
    /// `agent`, `mtd`, ...
    pub component: &'static str,
    pub version: &'static str,
}

impl Collector for BuildInfo {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        Family::info(
            &mut enc,
            "rewind_build",
            "The program and version serving these metrics.",
        )?
        .info_at(&[("component", self.component), ("version", self.version)])
    }
}
