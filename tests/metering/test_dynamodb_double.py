"""The DynamoDB that ingest's tests and benches run against (moto, with billing_local.aws's changes)
behaves as DynamoDB does where ingest relies on it: PartiQL INSERTs in a BatchExecuteStatement
(each statement on its own, DuplicateItem for an existing key, at most 25) and conditions
evaluated against each write's own values (moto's parsed conditions are shared between writes),
and, when asked to, TransactionConflict for a transaction on an item another one still holds."""

from __future__ import annotations

import time
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from billing_local.aws import TRANSACTION_MS_VARIABLE, local_aws, resource_environment


@pytest.fixture
def table():
    with local_aws(prefix=f"d{uuid.uuid4().hex[:8]}") as resources:
        yield (
            boto3.client("dynamodb", region_name="us-east-1"),
            resource_environment(resources)["LEDGER_TABLE"],
        )


def insert(table_name: str, pk: str, batch: str = "b1") -> dict:
    return {
        "Statement": f"INSERT INTO \"{table_name}\" VALUE {{'pk': ?, 'batch_id': ?}}",
        "Parameters": [{"S": pk}, {"S": batch}],
    }


def test_an_insert_of_an_existing_key_is_a_duplicate_and_the_others_still_run(table):
    client, name = table
    # Given an item EVT#a
    client.put_item(TableName=name, Item={"pk": {"S": "EVT#a"}, "batch_id": {"S": "first"}})
    # When a batch inserts EVT#a and EVT#b
    responses = client.batch_execute_statement(
        Statements=[insert(name, "EVT#a", "second"), insert(name, "EVT#b", "second")]
    )["Responses"]
    # Then the first statement fails with DuplicateItem and leaves the item alone, the second runs
    assert responses[0]["Error"]["Code"] == "DuplicateItem"
    assert "Error" not in responses[1]
    item = client.get_item(TableName=name, Key={"pk": {"S": "EVT#a"}}, ConsistentRead=True)["Item"]
    assert item["batch_id"] == {"S": "first"}
    item = client.get_item(TableName=name, Key={"pk": {"S": "EVT#b"}}, ConsistentRead=True)["Item"]
    assert item == {"pk": {"S": "EVT#b"}, "batch_id": {"S": "second"}}


def test_a_batch_holds_at_most_25_statements(table):
    client, name = table
    # When a batch of 26 statements is sent, Then the request is refused whole and nothing is written
    with pytest.raises(ClientError) as refused:
        client.batch_execute_statement(Statements=[insert(name, f"EVT#{i}") for i in range(26)])
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert client.scan(TableName=name)["Count"] == 0


def test_other_statements_still_go_to_moto(table):
    client, name = table
    client.put_item(TableName=name, Item={"pk": {"S": "EVT#a"}, "batch_id": {"S": "first"}})
    # When an UPDATE is sent in a batch, Then moto's own PartiQL runs it
    statement = f'UPDATE "{name}" SET batch_id = ? WHERE pk = ?'
    client.batch_execute_statement(
        Statements=[{"Statement": statement, "Parameters": [{"S": "x"}, {"S": "EVT#a"}]}]
    )
    item = client.get_item(TableName=name, Key={"pk": {"S": "EVT#a"}}, ConsistentRead=True)["Item"]
    assert item["batch_id"] == {"S": "x"}


def test_one_condition_sent_with_other_values_is_evaluated_with_its_own(table):
    client, name = table
    client.put_item(TableName=name, Item={"pk": {"S": "EVT#a"}, "batch_id": {"S": "one"}})

    def rewrite(previous: str, new: str) -> bool:
        try:
            client.put_item(
                TableName=name,
                Item={"pk": {"S": "EVT#a"}, "batch_id": {"S": new}},
                ConditionExpression="batch_id = :prev",
                ExpressionAttributeValues={":prev": {"S": previous}},
            )
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
            return False
        return True

    # Given the claim is held by "one": a rewrite on condition "held by two" fails, "held by one" works
    assert not rewrite("two", "three")
    assert rewrite("one", "two")
    # When the same condition is sent again with values seen before, Then each is judged afresh
    assert not rewrite("one", "three")
    assert rewrite("two", "one")


def test_a_transaction_on_an_item_another_one_still_holds_is_a_transaction_conflict(table, monkeypatch):
    client, name = table
    # Given transactions keep their items 1 s (the scale model's --tx-ms)
    monkeypatch.setenv(TRANSACTION_MS_VARIABLE, "1000")

    def count(pk: str) -> dict:
        return {
            "Update": {
                "TableName": name,
                "Key": {"pk": {"S": pk}},
                "UpdateExpression": "ADD used :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }

    client.transact_write_items(TransactItems=[count("QUOTA#t#2025-11")])
    # When another transaction touches the same counter at once
    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(TransactItems=[count("QUOTA#t#2025-11"), count("QUOTA#u#2025-11")])
    # Then it is cancelled for that item only and writes nothing; once the first has ended it runs
    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["TransactionConflict", "None"]
    assert "Item" not in client.get_item(TableName=name, Key={"pk": {"S": "QUOTA#u#2025-11"}})
    time.sleep(1.05)
    client.transact_write_items(TransactItems=[count("QUOTA#t#2025-11"), count("QUOTA#u#2025-11")])
    item = client.get_item(TableName=name, Key={"pk": {"S": "QUOTA#t#2025-11"}}, ConsistentRead=True)["Item"]
    assert item["used"] == {"N": "2"}
