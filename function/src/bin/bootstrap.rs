//! The Lambda function's entry point (`provided.al2023` runs `bootstrap`).

use counter_function::dynamo::{DynamoStore, IdempotencyTimings};
use counter_function::{lambda, logging};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    logging::init();
    // Runs once per execution environment, not per request.
    let setup = lambda::Setup::from_environment()?;
    let store = DynamoStore::new(setup.dynamodb_client(), setup.table, IdempotencyTimings::default());
    lambda::run(store).await
}
