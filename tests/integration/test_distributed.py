"""Multi-process training for real: the stages launch torch's distributed launcher (gloo on CPU)."""

import dataclasses

from recsys_tasks.config import config_from_env
from recsys_tasks.data.sources import write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.pipeline import RunContext, evaluate, extract, finetune, prepare, pretrain, validate


def test_pretrain_and_finetune_in_two_ddp_processes(recsys_home):
    base = config_from_env()
    items = recsys_home / "items.csv"
    items.write_text("item_id,attribute\n" + "".join(f"i{n},group{n % 5}\n" for n in range(120)))
    config = dataclasses.replace(
        base, pretrain_objectives="masked_item+contrastive+attribute", items_uri=str(items),
        train=dataclasses.replace(
            base.train, processes=2, device="cpu", pretrain_epochs=1, epochs=4, patience=4, auxiliary="attribute",
        ),
    )
    write_interactions(generate_interactions(SyntheticSpec(users=300, items=120, topics=6, seed=3)), config.source_uri)
    run = RunContext("ddp-run", config)
    extracted = extract(run)
    validate(run, extracted["interactions"])
    prepared = prepare(run, extracted["interactions"])

    encoder = pretrain(run, prepared["sequences"], extracted["item_attributes"])
    assert encoder["encoder"] and run.store.exists(encoder["encoder"])
    model = finetune(run, prepared["sequences"], encoder["encoder"], extracted["item_attributes"])
    assert model["training_processes"] == 2 and model["best_epoch"] >= 1
    lineage = run.store.read_json(f"models/{model['model_version']}/lineage.json")
    assert lineage["training_processes"] == 2 and lineage["encoder"] == encoder["encoder"]
    assert lineage["objective"] == "next_item+0.1*attribute"

    results = evaluate(run, prepared["sequences"], model["model_version"])
    assert results["model"]["NDCG@10"] > results["popularity"]["NDCG@10"]
