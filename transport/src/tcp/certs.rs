//! Certificates for a cluster's links: a certificate authority and the node certificates it
//! signs, each naming its node ([`node_name`]), and the client certificates, each naming its
//! role ([`client_name`], [`admin_name`]), as PEM text. What `zeroraft certs` writes for a
//! local cluster, and what tests use; a production cluster may as well use its own CA, as long
//! as each node's certificate carries its name.

use std::ops::Range;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{ClientRole, ClientTls, NodeId, PeerTls, TlsError, admin_name, client_name, node_name};

/// A certificate and its private key, as PEM text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8). Secret.
    pub key_pem: String,
}

/// A certificate authority that signs node certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The authority's own certificate and key.
    issued: Issued,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn failed(what: &str) -> impl FnOnce(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError::new(format!("{what}: {e}"))
}

impl Authority {
    /// A new authority with a fresh key (ECDSA P-256), its certificate named `name` and valid
    /// over `valid`.
    ///
    /// # Errors
    ///
    /// [`TlsError`] if the key or certificate cannot be made.
    pub fn new(name: &str, valid: Range<SystemTime>) -> Result<Self, TlsError> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(failed("the CA certificate"))?;
        params.not_before = valid.start.into();
        params.not_after = valid.end.into();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(failed("the CA key"))?;
        let cert = params
            .self_signed(&key)
            .map_err(failed("the CA certificate"))?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            issued,
        })
    }

    /// The authority whose certificate and key are `cert_pem` and `key_pem` (what
    /// [`Authority::issued`] gave): to sign certificates for a cluster's later nodes with the CA
    /// it started with.
    ///
    /// # Errors
    ///
    /// [`TlsError`] if either cannot be read, or the certificate is no CA's.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(failed("the CA key"))?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(failed("the CA certificate"))?;
        Ok(Self {
            issuer,
            issued: Issued {
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.to_owned(),
            },
        })
    }

    /// The authority's certificate and key.
    pub fn issued(&self) -> &Issued {
        &self.issued
    }

    /// A certificate for node `id` of cluster `cluster` (for both ends of a link), with a fresh
    /// key, valid over `valid`.
    ///
    /// # Errors
    ///
    /// [`TlsError`] if the key or certificate cannot be made.
    pub fn node(
        &self,
        cluster: u64,
        id: NodeId,
        valid: Range<SystemTime>,
    ) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(vec![node_name(cluster, id)])
            .map_err(failed("a node certificate"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, node_name(cluster, id));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = valid.start.into();
        params.not_after = valid.end.into();
        let key = KeyPair::generate().map_err(failed("a node key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(failed("a node certificate"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate for a client of cluster `cluster` in role `role` (its name is
    /// [`client_name`] or [`admin_name`]; it serves to authenticate a client only), with a fresh
    /// key, valid over `valid`.
    ///
    /// # Errors
    ///
    /// [`TlsError`] if the key or certificate cannot be made.
    pub fn client(
        &self,
        cluster: u64,
        role: ClientRole,
        valid: Range<SystemTime>,
    ) -> Result<Issued, TlsError> {
        let name = match role {
            ClientRole::Client => client_name(cluster),
            ClientRole::Admin => admin_name(cluster),
        };
        let mut params =
            CertificateParams::new(vec![name.clone()]).map_err(failed("a client certificate"))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = valid.start.into();
        params.not_after = valid.end.into();
        let key = KeyPair::generate().map_err(failed("a client key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(failed("a client certificate"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// [`ClientTls`] for a client of cluster `cluster` in role `role`, trusting this
    /// authority, its certificate valid over `valid`.
    ///
    /// # Errors
    ///
    /// [`TlsError`] if the key or certificate cannot be made.
    pub fn client_tls(
        &self,
        cluster: u64,
        role: ClientRole,
        valid: Range<SystemTime>,
    ) -> Result<ClientTls, TlsError> {
        let issued = self.client(cluster, role, valid)?;
        ClientTls::new(
            &PeerTls::from_issued(&self.issued.cert_pem, &issued)?,
            cluster,
        )
    }

    /// [`PeerTls`] for node `id` of cluster `cluster`, trusting this authority, its
    /// certificate valid over `valid`.
    ///
    /// # Errors
    ///
    /// [`TlsError`] if the key or certificate cannot be made.
    pub fn peer_tls(
        &self,
        cluster: u64,
        id: NodeId,
        valid: Range<SystemTime>,
    ) -> Result<PeerTls, TlsError> {
        let node = self.node(cluster, id, valid)?;
        PeerTls::from_issued(&self.issued.cert_pem, &node)
    }
}

impl PeerTls {
    /// Settings from a node's [`Issued`] certificate and the CA's certificate (PEM).
    ///
    /// # Errors
    ///
    /// As [`PeerTls::from_pem`].
    pub fn from_issued(ca_pem: &str, node: &Issued) -> Result<Self, TlsError> {
        Self::from_pem(
            ca_pem.as_bytes(),
            node.cert_pem.as_bytes(),
            node.key_pem.as_bytes(),
        )
    }
}
