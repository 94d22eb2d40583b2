//! The certificate of the custom domain (`--certificate-arn`), checked before any write:
//! ACM's, in the stack's region, issued, and covering the domain's name.

use crate::aws::{AwsError, found};
use crate::change::Refusal;

use super::WantedDomain;

/// A certificate as ACM describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CertificateState {
    pub(crate) arn: String,
    /// `ISSUED`, `PENDING_VALIDATION`, `EXPIRED`, …
    pub(crate) status: String,
    /// Its domain name and subject alternative names.
    pub(crate) names: Vec<String>,
}

/// ACM's description of `arn`; `None` when there is no such certificate.
pub(crate) async fn read(client: &aws_sdk_acm::Client, arn: &str) -> Result<Option<CertificateState>, AwsError> {
    let describe = client.describe_certificate().certificate_arn(arn).send().await;
    let Some(described) = found("acm:DescribeCertificate", describe, &["ResourceNotFoundException"])? else {
        return Ok(None);
    };
    let certificate = described.certificate();
    let mut names: Vec<String> = certificate.and_then(|c| c.domain_name()).map(str::to_owned).into_iter().collect();
    names.extend(certificate.map(|c| c.subject_alternative_names().to_vec()).unwrap_or_default());
    names.dedup();
    let status = certificate.and_then(|c| c.status()).map(|status| status.as_str().to_owned()).unwrap_or_default();
    Ok(Some(CertificateState { arn: arn.to_owned(), status, names }))
}

/// Whether a certificate for `names` serves `domain`: by its name, or a wildcard one
/// label up (`*.example.com` covers `ids.example.com`, not `a.ids.example.com`).
pub(crate) fn covers(names: &[String], domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    names.iter().map(|name| name.to_ascii_lowercase()).any(|name| match name.strip_prefix("*.") {
        Some(parent) => domain.split_once('.').is_some_and(|(_, rest)| rest == parent),
        None => name == domain,
    })
}

/// Checks the certificate for `wanted` in `region`: ACM's, in that region, issued, and
/// covering the name.
pub(crate) fn check(
    wanted: &WantedDomain,
    certificate: Option<&CertificateState>,
    region: &str,
) -> Result<(), Refusal> {
    let arn = &wanted.certificate_arn;
    let certificate_region = arn.split(':').nth(3).unwrap_or_default();
    if certificate_region != region {
        return Err(Refusal::CertificateRegion { arn: arn.clone(), region: region.to_owned() });
    }
    let Some(certificate) = certificate else {
        return Err(Refusal::CertificateNotFound { arn: arn.clone() });
    };
    if certificate.status != "ISSUED" {
        return Err(Refusal::CertificateNotIssued { arn: arn.clone(), status: certificate.status.clone() });
    }
    if !covers(&certificate.names, &wanted.name) {
        let names = certificate.names.join(", ");
        return Err(Refusal::CertificateNotCovering { arn: arn.clone(), name: wanted.name.clone(), names });
    }
    Ok(())
}

/// What the check of `domain`'s certificate calls.
pub(crate) fn grant(domain: &WantedDomain) -> crate::resources::Grant {
    crate::resources::Grant::new("Certificate", &["acm:DescribeCertificate"], vec![domain.certificate_arn.clone()])
}
