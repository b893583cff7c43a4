terraform {
  # 1.7: mock providers in `terraform test`; 1.5: check blocks and preconditions.
  required_version = ">= 1.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}
