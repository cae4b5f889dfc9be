use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = chaincode_operator::cli::Cli::parse();
    match chaincode_operator::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", chaincode_operator::cli::describe_error(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
