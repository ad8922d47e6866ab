//! What a stored cluster holds, written beside its data directory in the pack: the templates it was
//! migrated into, so a run that unpacks it knows them without asking the server.

use crate::template::Template;

/// The templates a stored cluster holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Manifest {
    pub(crate) templates: Vec<Template>,
}

impl Manifest {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `None` for a manifest this build cannot read (written by another version): the entry is not used.
    pub(crate) fn from_json(text: &str) -> Option<Manifest> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_back_and_a_foreign_one_is_refused() {
        let manifest = Manifest {
            templates: vec![Template {
                name: "pgtest_template".into(),
                migrations: 3,
                fixtures: 1,
                unlogged_tables: true,
            }],
        };
        assert_eq!(Manifest::from_json(&manifest.to_json()), Some(manifest));
        assert_eq!(Manifest::from_json("{\"tables\":[]}"), None);
        assert_eq!(Manifest::from_json("not json"), None);
    }
}
