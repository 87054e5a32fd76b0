from __future__ import annotations

import pytest

from raymlops.data.labels import infer_positive


@pytest.mark.parametrize(("counts", "positive", "why"), [
    ({"Yes": 30, "No": 70}, "Yes", "conventional positive"),
    ({"No": 30, "Yes ": 70}, "Yes", "conventional positive"),
    ({"churned": 20, "stayed": 80}, "churned", "conventional positive"),
    ({"stayed": 20, "moved": 80}, "moved", "conventional negative"),
    ({"red": 20, "blue": 80}, "red", "minority"),
    ({"True": 1, "False": 5}, None, "0/1 or true/false"),
    ({"0.0": 10, "1.0": 5}, None, "0/1 or true/false"),
    ({"a": 1, "b": 1, "c": 1}, None, "3 distinct values"),
])
def test_the_positive_class_of_a_two_valued_label(counts, positive, why):
    got, reason = infer_positive(counts)
    assert got == positive and why in reason


def test_mixed_case_spellings_of_two_values_are_two_values():
    from raymlops.data.labels import infer_positive

    positive, reason = infer_positive({"Yes": 40, "yes": 10, "No": 300, "no": 50})
    assert positive is not None and positive.casefold() == "yes", reason


def test_with_a_schema_the_positive_class_comes_from_its_label_set(tmp_path):
    """A batch with a stray third label value still has two classes when the expected
    schema says so: the stray rows are validation's to quarantine, not a reason to read
    no label at all."""
    from raymlops.config import DataConfig
    from raymlops.data.ingest import _expected_labels
    from raymlops.data.schema import ExpectedSchema

    path = ExpectedSchema(columns={"Churn": "string"}, labels=["No", "Yes"]).save(
        tmp_path / "schema.json")
    data = DataConfig.model_validate({"source": "x", "target": "Churn",
                                      "task": "classification",
                                      "validation": {"schema": str(path)}})
    counts = {"Yes": 200, "No": 700, "Maybe": 100}
    positive, reason = infer_positive(_expected_labels(data, counts))
    assert positive == "Yes", reason
    no_schema = data.model_copy(update={"validation": data.validation.model_copy(
        update={"schema_": None})})
    assert infer_positive(_expected_labels(no_schema, counts))[0] is None
