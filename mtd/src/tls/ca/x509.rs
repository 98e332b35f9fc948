//! The X.509 fields every certificate the CA makes shares: names, key usages, serial and
//! validity.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyUsagePurpose, SanType, SerialNumber};

use super::serial::{hex, new_serial};
use super::*;

pub(super) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Key usages of every end-entity certificate. qemu's tls-creds-x509 refuses a certificate whose
/// key usage lacks key encipherment ("usage does not permit key encipherment"), whatever the key
/// type, so it is there next to the digital signature TLS actually uses.
pub(super) fn leaf_key_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ]
}

pub(super) fn dn(cn: &str, ou: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "Rewind");
    if let Some(ou) = ou {
        d.push(DnType::OrganizationalUnitName, ou);
    }
    d.push(DnType::CommonName, cn);
    d
}

/// Names a user may give for a certificate: DNS names and IP addresses, nothing that would not
/// parse as either.
pub(super) fn san(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    Ok(SanType::DnsName(name.try_into().with_context(|| {
        format!("{name:?} is neither a DNS name nor an IP address")
    })?))
}

/// Fill in serial and validity; the end is capped at the CA's own expiry (a certificate cannot
/// outlive its issuer usefully). Returns the register entry.
pub(super) fn stamp(
    p: &mut CertificateParams,
    name: &str,
    kind: Kind,
    days: u32,
    ca_expiry: Option<SystemTime>,
) -> Result<Issued> {
    let now = SystemTime::now();
    let not_before = now - BACKDATE;
    let mut not_after = now + check_days("--days", days)?;
    if let Some(cap) = ca_expiry {
        if not_after > cap {
            eprintln!(
                "note: the CA expires on {}: the certificate for {name} ends then, not in {days} days",
                rfc3339(cap)
            );
            not_after = cap;
        }
    }
    let serial = new_serial()?;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.not_before = x509_time!(not_before);
    p.not_after = x509_time!(not_after);
    Ok(Issued {
        serial: hex(&serial),
        name: name.to_string(),
        kind,
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        revoked: None,
    })
}
