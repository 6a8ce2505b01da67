//! The CAIP-122 text a sign-in proof's signature covers, rebuilt from the proof's fields exactly
//! as the official client builds it (docs/sessions.md, "The signed text"): EIP-4361 for `eip155:`
//! chains, the SIWS layout for `solana:` chains. The two differ in blank lines, in which empty
//! optional fields they print, and in EIP-4361's grammar, which only the EVM text must obey.

use alloy::primitives::Address;

use super::proof::Proof;

/// Why a proof's fields cannot be an EIP-4361 message (the SIWE grammar the client enforces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSiwe(pub String);

/// The EIP-4361 text for an `eip155:<chain_id>` proof, with the address EIP-55 checksummed (the
/// client converts an all-lower or all-upper address and refuses a wrong mixed-case checksum).
pub fn siwe(p: &Proof, chain_id: u64) -> Result<String, NotSiwe> {
    let address = checksummed(&p.address)?;
    if p.version != "1" {
        return Err(NotSiwe("version must be \"1\"".into()));
    }
    if p.nonce.len() < 8 || !p.nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(NotSiwe("nonce must be at least 8 letters or digits".into()));
    }
    if let Some(s) = &p.statement
        && !s.bytes().all(statement_char)
    {
        return Err(NotSiwe("statement has a character EIP-4361 forbids".into()));
    }
    if p.domain.is_empty()
        || p.domain
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'/')
    {
        return Err(NotSiwe("domain is not an authority".into()));
    }
    for uri in std::iter::once(&p.uri).chain(p.resources.iter().flatten()) {
        if url::Url::parse(uri).is_err() || uri.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(NotSiwe(format!("\"{uri}\" is not an absolute URI")));
        }
    }
    if let Some(id) = &p.request_id
        && id
            .bytes()
            .any(|b| b.is_ascii_whitespace() || !b.is_ascii_graphic())
    {
        return Err(NotSiwe("requestId has a character EIP-4361 forbids".into()));
    }
    let mut text = format!(
        "{} wants you to sign in with your Ethereum account:\n{address}\n\n",
        p.domain
    );
    match &p.statement {
        Some(s) => {
            text.push_str(s);
            text.push_str("\n\n");
        }
        // No statement: EIP-4361's two blank lines (as the client writes them).
        None => text.push('\n'),
    }
    text.push_str(&format!(
        "URI: {}\nVersion: {}\nChain ID: {chain_id}\nNonce: {}\nIssued At: {}",
        p.uri, p.version, p.nonce, p.issued_at
    ));
    push_if(&mut text, "Expiration Time", p.expiration_time.as_deref());
    push_if(&mut text, "Not Before", p.not_before.as_deref());
    if let Some(id) = &p.request_id {
        text.push_str(&format!("\nRequest ID: {id}"));
    }
    if let Some(resources) = &p.resources {
        text.push_str("\nResources:");
        for r in resources {
            text.push_str(&format!("\n- {r}"));
        }
    }
    Ok(text)
}

/// The SIWS text for a `solana:<reference>` proof: one blank line when there is no statement,
/// empty optional fields left out, `Resources:` only when there are some, no grammar.
pub fn siws(p: &Proof, reference: &str) -> String {
    let mut text = format!(
        "{} wants you to sign in with your Solana account:\n{}\n\n",
        p.domain, p.address
    );
    if let Some(s) = p.statement.as_deref().filter(|s| !s.is_empty()) {
        text.push_str(s);
        text.push_str("\n\n");
    }
    text.push_str(&format!(
        "URI: {}\nVersion: {}\nChain ID: {reference}\nNonce: {}\nIssued At: {}",
        p.uri, p.version, p.nonce, p.issued_at
    ));
    push_if(&mut text, "Expiration Time", p.expiration_time.as_deref());
    push_if(&mut text, "Not Before", p.not_before.as_deref());
    push_if(&mut text, "Request ID", p.request_id.as_deref());
    if let Some(resources) = p.resources.as_ref().filter(|r| !r.is_empty()) {
        text.push_str("\nResources:");
        for r in resources {
            text.push_str(&format!("\n- {r}"));
        }
    }
    text
}

/// Appends `\n<label>: <value>` when the value is present and not empty.
fn push_if(text: &mut String, label: &str, value: Option<&str>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        text.push_str(&format!("\n{label}: {v}"));
    }
}

/// EIP-4361's statement characters: printable ASCII but `"%<>\^`{|}`.
fn statement_char(b: u8) -> bool {
    (b' '..=b'~').contains(&b) && !b"\"%<>\\^`{|}".contains(&b)
}

/// The EIP-55 form of `0x` + 40 hex digits; a mixed-case address must already be it.
pub fn checksummed(raw: &str) -> Result<String, NotSiwe> {
    let hex = raw
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| NotSiwe("address is not 0x and 40 hex digits".into()))?;
    let address: Address = raw
        .parse()
        .map_err(|_| NotSiwe("address is not 0x and 40 hex digits".into()))?;
    let checksum = address.to_checksum(None);
    let mixed =
        hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && checksum != raw {
        return Err(NotSiwe("address has a wrong EIP-55 checksum".into()));
    }
    Ok(checksum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::proof::tests::proof;

    #[test]
    fn siwe_text_has_two_blank_lines_without_a_statement_and_prints_resources() {
        let mut p = proof("eip155:8453", "0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
        p.statement = None;
        let text = siwe(&p, 8453).expect("siwe");
        assert!(text.starts_with(
            "api.example.com wants you to sign in with your Ethereum account:\n\
             0x70997970C51812dc3A010C7d01b50e0d17dc79C8\n\n\nURI: https://api.example.com/premium-data\n"
        ));
        assert!(text.ends_with("\nResources:\n- https://api.example.com/premium-data"));
    }

    #[test]
    fn siwe_refuses_what_the_client_refuses() {
        let p = proof("eip155:8453", "0x70997970C51812dc3a010C7d01b50e0d17dc79C8");
        assert!(siwe(&p, 8453).is_err(), "bad checksum");
        let mut p = proof("eip155:8453", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
        p.nonce = "short".into();
        assert!(siwe(&p, 8453).is_err());
        p.nonce = "a1b2c3d4e5f67890".into();
        p.statement = Some("100%".into());
        assert!(siwe(&p, 8453).is_err());
    }

    #[test]
    fn siws_text_has_one_blank_line_and_skips_empty_fields() {
        let mut p = proof(
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
            "GmaDrppBC7P5ARKV8g3djiwP89vz1jLK23V2GBjuAEGB",
        );
        p.statement = Some(String::new());
        p.resources = Some(vec![]);
        let text = siws(&p, "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp");
        assert!(text.contains("GmaDrppBC7P5ARKV8g3djiwP89vz1jLK23V2GBjuAEGB\n\nURI: "));
        assert!(!text.contains("Resources"));
    }
}
