# Test configuration, not part of the example (see emulator.tf): merged into the
# example's provider "aws" block by Terraform's override-file rules. Every service the
# example calls goes to the emulator; credentials are fake and come from the environment
# (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, set by scripts/check-terraform-apply).
# The account id is read from the emulator's STS (123456789012), not skipped: the provider
# needs it to read security group rules that reference a group of the same account.
# kms: reading the reactor's ledger table, the provider asks KMS (DescribeKey
# alias/aws/dynamodb) whether its key is DynamoDB's AWS managed one.

provider "aws" {
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    autoscaling = var.emulator_endpoint
    cloudwatch  = var.emulator_endpoint
    dynamodb    = var.emulator_endpoint
    ec2         = var.emulator_endpoint
    elb         = var.emulator_endpoint
    elbv2       = var.emulator_endpoint
    events      = var.emulator_endpoint
    iam         = var.emulator_endpoint
    kms         = var.emulator_endpoint
    lambda      = var.emulator_endpoint
    logs        = var.emulator_endpoint
    route53     = var.emulator_endpoint
    s3          = var.emulator_endpoint
    sns         = var.emulator_endpoint
    sqs         = var.emulator_endpoint
    ssm         = var.emulator_endpoint
    sts         = var.emulator_endpoint
  }
}
