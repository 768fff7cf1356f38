//! Random bytes from the operating system, through `ring`.

use ring::rand::{SecureRandom, SystemRandom};

use super::E2eError;

/// `N` random bytes from the system generator.
pub(crate) fn bytes<const N: usize>() -> Result<[u8; N], E2eError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| E2eError::Randomness)?;
    Ok(out)
}
