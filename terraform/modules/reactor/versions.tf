terraform {
  # 1.9: validations that refer to other variables; 1.7: mock providers in `terraform test`.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}
