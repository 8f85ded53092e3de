//! Reloads the key ring so keys created, rotated or revoked by another
//! replica are served here too.

use crate::state::AppState;

pub async fn run_once(state: &AppState) -> anyhow::Result<()> {
    state.keyring.reload(&state.store).await
}
