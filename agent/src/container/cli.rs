//! The `containers` diagnostic command.

use std::process::ExitCode;

/// `container-manager-agent containers [--ecs-container-name N | --docker-name N]`
#[derive(Debug, clap::Args)]
pub struct ContainersArgs {
    #[arg(long, conflicts_with = "docker_name")]
    pub ecs_container_name: Option<String>,
    #[arg(long)]
    pub docker_name: Option<String>,
}

pub async fn containers(args: ContainersArgs) -> ExitCode {
    eprintln!("containers: not part of this build yet ({args:?})");
    ExitCode::FAILURE
}
