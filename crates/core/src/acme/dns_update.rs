//! The challenge TXT in the provider's ACME zone, written the standard way: an RFC 2136 dynamic
//! update signed with TSIG (RFC 8945) to the zone's primary server, with hickory's client.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::net::client::{Client, ClientHandle};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_resolver::proto::rr::rdata::TXT;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordSet, RecordType, TSigner};

use super::{AcmeError, AcmeSettings};

/// TTL of the challenge TXT: short, so a renewal's new values are not hidden behind old ones
/// in a validator's cache.
const TXT_TTL: u32 = 30;

/// How far the server's clock may be from ours for a signed update (RFC 8945 suggests 300 s).
const FUDGE: u16 = 300;

/// The zone's primary server, with the key the updates are signed with.
pub(crate) struct ZoneUpdater {
    server: SocketAddr,
    zone: Name,
    signer: TSigner,
}

fn fqdn(name: &str) -> Result<Name, AcmeError> {
    let mut n = Name::from_ascii(name).map_err(|e| AcmeError::Settings(format!("{name:?} is not a DNS name: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

impl ZoneUpdater {
    pub(crate) fn new(settings: &AcmeSettings) -> Result<Self, AcmeError> {
        let missing = |what: &str| AcmeError::Settings(format!("acme.{what} is not set"));
        let server: SocketAddr = settings
            .dns_server
            .as_deref()
            .ok_or_else(|| missing("dns_server"))?
            .parse()
            .map_err(|_| AcmeError::Settings("acme.dns_server is not an address:port".into()))?;
        let zone = fqdn(settings.zone.as_deref().ok_or_else(|| missing("zone"))?)?;
        let key_name = fqdn(settings.tsig_key_name.as_deref().ok_or_else(|| missing("tsig_key_name"))?)?;
        let secret_file = settings.tsig_secret_file.as_deref().ok_or_else(|| missing("tsig_secret_file"))?;
        let secret = super::settings::read_secret(secret_file)
            .map_err(|why| AcmeError::Settings(format!("acme.tsig_secret_file {secret_file:?} {why}")))?;
        let algorithm = match settings.tsig_algorithm.as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => return Err(AcmeError::Settings(format!("acme.tsig_algorithm {other:?} is not supported"))),
        };
        let signer = TSigner::new(secret, algorithm, key_name, FUDGE)
            .map_err(|e| AcmeError::Settings(format!("TSIG key: {e}")))?;
        Ok(ZoneUpdater { server, zone, signer })
    }

    fn client(&self) -> Client<TokioRuntimeProvider> {
        let stream = UdpClientStream::builder(self.server, TokioRuntimeProvider::default())
            .with_timeout(Some(Duration::from_secs(5)))
            .with_signer(Some(self.signer.clone()))
            .build();
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(background);
        client
    }

    /// The server's refusal in the admin's words. A TSIG failure comes as NOTAUTH with the reason
    /// in the answer's TSIG record (RFC 8945 §5.2): a clock more than [`FUDGE`] seconds off
    /// (BADTIME) is told apart from a key the server does not know or a secret that differs, since
    /// the fix is another one.
    fn refused(&self, what: &str, code: ResponseCode, tsig: Option<TsigError>) -> AcmeError {
        let hint = match (code, tsig) {
            (_, Some(TsigError::BadTime)) => format!(
                " (TSIG BADTIME: the update was signed at a time more than {FUDGE} s off the server's clock; \
                 are this host's and the DNS server's clocks right?)"
            ),
            (_, Some(TsigError::BadKey)) => {
                " (TSIG BADKEY: the server knows no key with this name and algorithm: check acme.tsig_key_name and \
                 acme.tsig_algorithm)"
                    .into()
            }
            (_, Some(TsigError::BadSig)) => {
                " (TSIG BADSIG: the signature does not verify: is the secret in acme.tsig_secret_file the server's?)"
                    .into()
            }
            (ResponseCode::NotAuth | ResponseCode::Refused, _) => {
                " (does the server know the TSIG key, with this name, algorithm and secret, and allow it to update the zone?)"
                    .into()
            }
            (ResponseCode::NotZone, _) => " (is acme.zone the zone's name, and the CNAME target inside it?)".into(),
            _ => String::new(),
        };
        AcmeError::DnsUpdate(format!("{} answered {code} to {what}{hint}", self.server))
    }

    /// Makes `values` the TXT records at `name` (in the zone), replacing what was there.
    pub(crate) async fn set_txt(&self, name: &str, values: &[String]) -> Result<(), AcmeError> {
        let owner = fqdn(name)?;
        let mut client = self.client();
        self.delete(&mut client, &owner).await?;
        let mut rrset = RecordSet::with_ttl(owner.clone(), RecordType::TXT, TXT_TTL);
        for v in values {
            rrset.add_rdata(RData::TXT(TXT::new(vec![v.clone()])));
        }
        let answer = client
            .append(rrset, self.zone.clone(), false)
            .await
            .map_err(|e| unverified(format!("update of {name} TXT at {}: {e}", self.server)))?;
        match answer.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            code => Err(self.refused(&format!("the update of {name} TXT"), code, tsig_error(&answer))),
        }
    }

    /// Removes the TXT records at `name` (after the CA has looked, or when it failed).
    pub(crate) async fn clear_txt(&self, name: &str) -> Result<(), AcmeError> {
        let owner = fqdn(name)?;
        let mut client = self.client();
        self.delete(&mut client, &owner).await
    }

    async fn delete(&self, client: &mut Client<TokioRuntimeProvider>, owner: &Name) -> Result<(), AcmeError> {
        let record = Record::from_rdata(owner.clone(), 0, RData::TXT(TXT::new(vec![String::new()])));
        let answer = client
            .delete_rrset(record, self.zone.clone())
            .await
            .map_err(|e| unverified(format!("removal of {owner} TXT at {}: {e}", self.server)))?;
        match answer.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            code => Err(self.refused(&format!("the removal of {owner} TXT"), code, tsig_error(&answer))),
        }
    }
}

/// A failed exchange. A server refusing the signature (BADSIG, BADKEY) answers with an empty MAC,
/// as RFC 8945 §5.2 has it, which hickory's client rejects as a TSIG protocol error of its own
/// (about truncated MACs) before the answer's error code can be read: the admin is told what it
/// means here. hickory's error has no kind for it, so its words are looked at.
fn unverified(text: String) -> AcmeError {
    if text.to_ascii_lowercase().contains("tsig") {
        AcmeError::DnsUpdate(format!(
            "{text} (the server did not sign its answer with the key: it refused the update's signature; \
             check acme.tsig_key_name, acme.tsig_algorithm and that the secret in acme.tsig_secret_file is the \
             server's)"
        ))
    } else {
        AcmeError::DnsUpdate(text)
    }
}

/// The TSIG error of an answer, when it carries one.
fn tsig_error(answer: &hickory_resolver::proto::op::Message) -> Option<TsigError> {
    answer.signature().and_then(|record| record.data.error)
}
