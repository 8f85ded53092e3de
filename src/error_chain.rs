//! The cause-chain formatter, at the bottom of the crate so that errors,
//! logging and the audit log can all use it.

/// Displays an error with its whole source chain (`outer: inner: …`), as
/// anyhow's `{:#}` does, for errors that are not an `anyhow::Error`: a log
/// line that says only "the audit log cannot be written" hides why.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_shows_every_cause() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(Chain(&e).to_string(), "outer: disk full");
    }
}
