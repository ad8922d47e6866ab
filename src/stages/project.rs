//! Stage 1, project: what `cargo metadata` says about the workspace (members, selected packages, target
//! directory).

use super::context::Run;
use super::error::Error;
use crate::cargo::{self, Project};

pub(crate) async fn load(run: &Run<'_>) -> Result<Project, Error> {
    Ok(cargo::project(&run.cli.cargo).await?)
}
