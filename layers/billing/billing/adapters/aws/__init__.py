"""AWS services other than DynamoDB: ``clients`` (one botocore config and one cached client per
service), ``queues`` (SQS: the usage fallback queue), ``invoicing_jobs`` (SQS: the close's jobs),
``invoice_archive`` (S3: the month's CSV), ``notices`` (EventBridge)."""
