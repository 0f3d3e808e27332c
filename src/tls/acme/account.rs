//! The ACME account: registered once per CA with the configured contacts (agreeing to the CA's
//! terms of service), its credentials kept in the data directory and reused afterwards.

use super::error::AcmeError;
use super::storage::{self, Paths};
use crate::config::AcmeSettings;
use instant_acme::{Account, NewAccount};

/// The ACME problem a CA answers when it no longer knows the account (a test CA restarted, or
/// the account was deactivated elsewhere).
pub const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// The stored account, or a new one (registered and stored) when there is none.
pub async fn load_or_create(settings: &AcmeSettings, paths: &Paths, roots: &rustls::RootCertStore) -> Result<Account, AcmeError> {
    match storage::load_account(paths)? {
        Some(credentials) => Account::builder_with_http(super::http::client(roots.clone())?)
            .from_credentials(credentials)
            .await
            .map_err(AcmeError::protocol("reading the ACME directory")),
        None => create(settings, paths, roots).await,
    }
}

/// Registers a new account with the configured contacts and stores its credentials (0600),
/// replacing any stored ones.
pub async fn create(settings: &AcmeSettings, paths: &Paths, roots: &rustls::RootCertStore) -> Result<Account, AcmeError> {
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = Account::builder_with_http(super::http::client(roots.clone())?)
        .create(&new, settings.directory.clone(), None)
        .await
        .map_err(AcmeError::protocol("registering an ACME account"))?;
    storage::save_account(paths, &credentials)?;
    tracing::info!(directory = %settings.directory, account = %account.id(), contact = ?settings.contact, "registered an ACME account");
    Ok(account)
}
