//! The extra databases (`[package.metadata.pgtest.databases.NAME]`): one template each, prepared like the
//! main ones (extensions, migrations, fixtures) and cached with them; then, for every database a test (or
//! the build, or a shared run) gets, a copy of each extra template named after it, its URL in the
//! database's own variable. The copies are made and dropped by the run's one owner of test databases,
//! [`super::test_databases::TestDatabases`].

use std::sync::Arc;

use sqlx::{Connection, PgConnection};

use super::{prepare_one, Template, TemplateError};
use crate::cluster::Endpoint;
use crate::config::extra::ExtraDatabase;

/// One extra database of the run: its name, its variable and its template.
#[derive(Debug)]
struct Extra {
    name: String,
    env: String,
    template: Template,
}

/// The run's extra databases, ready to be copied; cheap to clone. Empty when none is declared, and then
/// every method is a no-op.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extras(Arc<[Extra]>);

/// Prepares the template of each extra database, in order: `pgtest_extra_<NAME>`.
pub(crate) async fn prepare(
    endpoint: &Endpoint,
    extras: &[ExtraDatabase],
    server_major: u32,
) -> Result<Vec<Template>, TemplateError> {
    if extras.is_empty() {
        return Ok(Vec::new());
    }
    let mut admin = PgConnection::connect_with(&endpoint.connect_options("postgres"))
        .await
        .map_err(TemplateError::Connect)?;
    let mut templates = Vec::with_capacity(extras.len());
    for extra in extras {
        let name = endpoint
            .database_name(&template_name(&extra.name))
            .into_owned();
        templates.push(prepare_one(endpoint, &mut admin, &extra.spec, name, server_major).await?);
    }
    let _ = admin.close().await;
    Ok(templates)
}

/// The template of extra database `name`.
fn template_name(name: &str) -> String {
    format!("pgtest_extra_{name}")
}

/// Splits a run's templates as stored (the main ones, then the extra ones) into the two.
pub(crate) fn split(mut templates: Vec<Template>, main: usize) -> (Vec<Template>, Vec<Template>) {
    let extras = templates.split_off(main.min(templates.len()));
    (templates, extras)
}

impl Extras {
    /// The extra databases `declared`, with their `templates` (from [`prepare`], in the same order).
    pub(crate) fn new(declared: &[ExtraDatabase], templates: Vec<Template>) -> Extras {
        let extras: Vec<Extra> = declared
            .iter()
            .zip(templates)
            .map(|(database, template)| Extra {
                name: database.name.clone(),
                env: database.env.clone(),
                template,
            })
            .collect();
        Extras(extras.into())
    }

    /// The extra databases `declared`, only to name their copies (in a kept cluster, say): their
    /// templates are named as [`prepare`] names them, and nothing more is known of them.
    pub(crate) fn named(declared: &[ExtraDatabase]) -> Extras {
        let templates = declared
            .iter()
            .map(|database| Template {
                name: template_name(&database.name),
                migrations: 0,
                fixtures: 0,
                unlogged_tables: false,
            })
            .collect();
        Extras::new(declared, templates)
    }

    pub(crate) fn templates(&self) -> impl Iterator<Item = &Template> {
        self.0.iter().map(|extra| &extra.template)
    }

    /// The name of extra database `name`'s copy that goes with database `base`.
    pub(crate) fn copy_name(base: &str, name: &str) -> String {
        format!("{base}__{name}")
    }

    /// Each extra database's template and the name of its copy that goes with database `base`.
    pub(crate) fn copies<'a>(
        &'a self,
        base: &'a str,
    ) -> impl Iterator<Item = (&'a str, String)> + 'a {
        self.0.iter().map(move |extra| {
            (
                extra.template.name.as_str(),
                Self::copy_name(base, &extra.name),
            )
        })
    }

    /// Each extra database's variable, set to the URL of its copy that goes with database `base`.
    pub(crate) fn env(&self, endpoint: &Endpoint, base: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|extra| {
                let url = endpoint.url(&Self::copy_name(base, &extra.name));
                (extra.env.clone(), url)
            })
            .collect()
    }

    /// `env`'s variables added to `env` (the main database's).
    pub(crate) fn with_env(
        &self,
        mut env: Vec<(String, String)>,
        endpoint: &Endpoint,
        base: &str,
    ) -> Vec<(String, String)> {
        env.extend(self.env(endpoint, base));
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseSpec;

    fn template(name: &str) -> Template {
        Template {
            name: name.into(),
            migrations: 0,
            fixtures: 0,
            unlogged_tables: false,
        }
    }

    fn declared(name: &str, env: &str) -> ExtraDatabase {
        ExtraDatabase {
            name: name.into(),
            env: env.into(),
            spec: DatabaseSpec::default(),
            env_origin: crate::config::Origin {
                table: String::new(),
                manifest: "/p/Cargo.toml".into(),
                line: None,
            },
        }
    }

    #[test]
    fn stored_templates_split_into_main_and_extra() {
        let all = vec![template("main"), template("a"), template("b")];
        let (main, extras) = split(all.clone(), 1);
        assert_eq!((main.len(), extras.len()), (1, 2));
        assert_eq!(extras[1].name, "b");
        assert_eq!(split(all, 5).1.len(), 0);
    }

    #[test]
    fn each_variable_names_the_copy_that_goes_with_the_database() {
        let extras = Extras::new(
            &[declared("audit", "AUDIT_URL"), declared("stats", "S_URL")],
            vec![
                template("pgtest_extra_audit"),
                template("pgtest_extra_stats"),
            ],
        );
        let endpoint = Endpoint {
            socket_dir: "/tmp/socket".into(),
            port: 5432,
            user: "postgres".into(),
            password: String::new(),
            remote: None,
        };
        let env = extras.with_env(
            vec![("DATABASE_URL".into(), "x".into())],
            &endpoint,
            "pgtest_7",
        );
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["DATABASE_URL", "AUDIT_URL", "S_URL"]);
        assert_eq!(env[1].1, endpoint.url("pgtest_7__audit"));
        assert_eq!(env[2].1, endpoint.url("pgtest_7__stats"));
        assert_ne!(env[1].1, env[2].1);
        assert!(Extras::default().env(&endpoint, "pgtest_7").is_empty());
    }
}
