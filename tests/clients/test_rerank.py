"""Reranking through boto3: Bedrock's Rerank (`bedrock-agent-runtime`), a rerank model's
native InvokeModel body, and `rerankingConfiguration` in Retrieve and
RetrieveAndGenerate — served by a remote reranking model (Cohere's Rerank, here
`cohere_double.py`, whose relevance is lexical and deterministic so the expected order
is computed, not written down), and by Bedrock as an upstream (a second Basalt whose
rerank model is the first one's, reached through SigV4-signed InvokeModel)."""
import json
import time

import boto3
import pytest
from botocore.config import Config

from basalt_support import (expect_client_error, http_request, inline_table, remote_embedding_toml,
                            remote_model_toml)
from cohere_double import API_KEY, DIMENSIONS, CohereDouble, relevance
from conftest import BOTO_CONFIG, REGION, serve_front
from kb_support import EMBEDDED

RERANK = "cohere.rerank-v3-5:0"
VIA_BEDROCK = "amazon.rerank-via-bedrock-v1:0"
EMBED = "cohere.embed-english-v3-v1:0"
CHAT = "cohere.command-r-v1:0"
ROLE_ARN = "arn:aws:iam::000000000000:role/basalt-kb"
LAX = BOTO_CONFIG.merge(Config(parameter_validation=False))

DOCUMENTS = [
    "Basalt is a fine-grained volcanic rock formed from rapidly cooling lava.",
    "The recipe calls for two cups of flour and one egg.",
    "Granite is a coarse-grained igneous rock rich in quartz and feldspar.",
    "Volcanic eruptions in Iceland produce basalt lava flows every few years.",
    "Tennis matches are played in sets of six games.",
]
QUERY = "Which volcanic rock forms from lava?"


def arn(model_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}::foundation-model/{model_id}"


def rerank_toml(model_id: str, placement: str, price: float = 2.0) -> str:
    return "\n" + "\n".join([
        "[[models]]",
        f'id = "{model_id}"',
        f'name = "{model_id}"',
        'provider = "Cohere"',
        'engine = "remote"',
        'native_body = "rerank"',
        'input_modalities = ["TEXT"]',
        'output_modalities = ["TEXT"]',
        'lifecycle = { status = "ACTIVE", start_of_life = "2024-12-01T00:00:00Z" }',
        f"price = {{ input_per_1k = {price} }}",
        placement,
    ]) + "\n"


def expected_order(query: str, documents: list[str]) -> list[int]:
    """The double's ranking: relevance descending, ties in request order."""
    return sorted(range(len(documents)), key=lambda i: (-relevance(query, documents[i]), i))


@pytest.fixture(scope="module")
def double():
    d = CohereDouble()
    yield d
    d.close()


@pytest.fixture(scope="module")
def front(double, tmp_path_factory, _hermetic_client_env):
    upstream = lambda model: "upstream = " + inline_table(  # noqa: E731
        api="cohere", base_url=double.base_url, model=model, api_key_env="BASALT_TEST_COHERE_KEY",
        timeout_secs=30, context_window=128000)
    models = (rerank_toml(RERANK, upstream("rerank-v3.5"))
              + remote_embedding_toml(EMBED, upstream("embed-english-v3.0"), DIMENSIONS, provider="Cohere")
              + remote_model_toml(CHAT, upstream("command-r-08-2024"), provider="Cohere"))
    yield from serve_front(tmp_path_factory, "rerank-front", models, {"BASALT_TEST_COHERE_KEY": API_KEY})


@pytest.fixture(scope="module")
def key(front):
    return front.cli_json("keys", "create", "--name", "rerank-tests", "--json")


def client(srv, key, service, config=BOTO_CONFIG):
    return boto3.session.Session().client(
        service, endpoint_url=srv.url, region_name=REGION, aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"], config=config)


@pytest.fixture(scope="module")
def art(front, key):
    return client(front, key, "bedrock-agent-runtime")


def rerank_request(documents, model=RERANK, query=QUERY, number=None, sources=None):
    config = {"modelConfiguration": {"modelArn": arn(model)}}
    if number is not None:
        config["numberOfResults"] = number
    return dict(
        queries=[{"type": "TEXT", "textQuery": {"text": query}}],
        sources=sources if sources is not None else [
            {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": d}}}
            for d in documents],
        rerankingConfiguration={"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": config},
    )


def test_rerank_orders_sources_by_the_models_relevance(art, double):
    r = art.rerank(**rerank_request(DOCUMENTS, number=3))
    order = expected_order(QUERY, DOCUMENTS)
    assert [x["index"] for x in r["results"]] == order[:3], r["results"]
    assert r["results"][0]["index"] in (0, 3), "a basalt-and-lava document is the most relevant"
    for x in r["results"]:
        assert x["relevanceScore"] == pytest.approx(relevance(QUERY, DOCUMENTS[x["index"]]))
        assert x["document"] == {"type": "TEXT", "textDocument": {"text": DOCUMENTS[x["index"]]}}
    sent = double.last("/v2/rerank")
    assert sent == {"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS, "top_n": 3}, sent


def test_rerank_returns_every_source_without_number_of_results(art):
    r = art.rerank(**rerank_request(DOCUMENTS))
    assert [x["index"] for x in r["results"]] == expected_order(QUERY, DOCUMENTS)


def test_json_documents_are_read_as_their_json_and_echoed(art, double):
    docs = [{"title": "Cooking", "body": "flour and eggs"}, {"title": "Geology", "body": "basalt lava rock"}]
    sources = [{"type": "INLINE", "inlineDocumentSource": {"type": "JSON", "jsonDocument": d}} for d in docs]
    r = art.rerank(**rerank_request([], query="basalt lava", sources=sources))
    assert [x["index"] for x in r["results"]] == [1, 0]
    assert r["results"][0]["document"] == {"type": "JSON", "jsonDocument": docs[1]}
    sent = double.last("/v2/rerank")["documents"]
    assert [json.loads(s) for s in sent] == docs, sent


def test_native_invoke_model_body(front, key, double):
    rt = client(front, key, "bedrock-runtime")
    r = rt.invoke_model(modelId=RERANK, body=json.dumps(
        {"query": QUERY, "documents": DOCUMENTS, "top_n": 2, "api_version": 2}))
    body = json.loads(r["body"].read())
    order = expected_order(QUERY, DOCUMENTS)
    assert [x["index"] for x in body["results"]] == order[:2], body
    assert body["results"][0]["relevance_score"] == pytest.approx(relevance(QUERY, DOCUMENTS[order[0]]))
    # A reranking model does not write text.
    expect_client_error(lambda: rt.converse(modelId=RERANK, messages=[{"role": "user", "content": [{"text": "hi"}]}]),
                        "ValidationException", 400, message_contains="reranking model")


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(queries=[]), "exactly one query"),
    (lambda r: r.update(queries=r["queries"] * 2), "exactly one query"),
    (lambda r: r["queries"][0].update(type="IMAGE"), "TEXT"),
    (lambda r: r["queries"][0].update(textQuery={"text": "  "}), "textQuery.text"),
    (lambda r: r.update(sources=[]), "1 to 1000"),
    (lambda r: r.update(sources=r["sources"] * 201), "1 to 1000"),
    (lambda r: r["sources"][1]["inlineDocumentSource"].update(type="JSON"), "sources[1]"),
    (lambda r: r["sources"][0]["inlineDocumentSource"]["textDocument"].update(text="x" * 32_001), "32000"),
    (lambda r: r["rerankingConfiguration"]["bedrockRerankingConfiguration"].update(numberOfResults=0), "numberOfResults"),
    (lambda r: r["rerankingConfiguration"].update(type="OTHER"), "BEDROCK_RERANKING_MODEL"),
    (lambda r: r["rerankingConfiguration"]["bedrockRerankingConfiguration"]["modelConfiguration"].update(
        modelArn=arn(CHAT)), "not a reranking model"),
])
def test_bad_rerank_requests_are_validation_errors(front, key, double, change, message):
    lax = client(front, key, "bedrock-agent-runtime", LAX)
    request = rerank_request(DOCUMENTS)
    change(request)
    before = len(double.requests)
    expect_client_error(lambda: lax.rerank(**request), "ValidationException", 400, message_contains=message)
    assert len(double.requests) == before, "nothing reaches the provider"


def test_an_unknown_model_is_not_found(art):
    expect_client_error(lambda: art.rerank(**rerank_request(DOCUMENTS, model="cohere.no-such-rerank-v9:0")),
                        "ResourceNotFoundException", 404)


def test_upstream_throttling_is_a_throttling_error(art):
    expect_client_error(lambda: art.rerank(**rerank_request(DOCUMENTS, query="please raise 429 now")),
                        "ThrottlingException", 429)


def test_search_units_are_metered(front):
    key = front.cli_json("keys", "create", "--name", "rerank-meter", "--json")
    art = client(front, key, "bedrock-agent-runtime")
    docs = [f"document {i} about basalt" for i in range(150)]
    art.rerank(**rerank_request(docs, query="basalt", number=5))
    deadline = time.monotonic() + 15
    while True:
        groups = [g for g in front.cli_json("usage", "--json")["groups"] if g["key_name"] == "rerank-meter"]
        if groups:
            break
        assert time.monotonic() < deadline, "no usage for the rerank key"
        time.sleep(0.3)
    assert [(g["model_id"], g["invocations"], g["input_tokens"]) for g in groups] == [(RERANK, 1, 2)], (
        f"150 documents are two search units, recorded as input units: {groups}")


@pytest.fixture(scope="module")
def relay(front, key, tmp_path_factory, _hermetic_client_env):
    """A Basalt whose rerank model is Bedrock upstream: the front's RERANK over InvokeModel."""
    upstream = "upstream = " + inline_table(
        api="bedrock", base_url=front.url, model=RERANK, region=REGION, timeout_secs=30, context_window=1,
        aws_access_key_id_env="BASALT_TEST_AWS_KEY_ID", aws_secret_access_key_env="BASALT_TEST_AWS_SECRET")
    yield from serve_front(tmp_path_factory, "rerank-relay", rerank_toml(VIA_BEDROCK, upstream), {
        "BASALT_TEST_AWS_KEY_ID": key["access_key_id"], "BASALT_TEST_AWS_SECRET": key["secret_access_key"]})


def test_bedrock_as_the_rerank_upstream(relay, art):
    relay_key = relay.cli_json("keys", "create", "--name", "relay-tests", "--json")
    via = client(relay, relay_key, "bedrock-agent-runtime").rerank(**rerank_request(DOCUMENTS, model=VIA_BEDROCK, number=4))
    direct = art.rerank(**rerank_request(DOCUMENTS, number=4))
    assert [(x["index"], x["relevanceScore"]) for x in via["results"]] == [
        (x["index"], x["relevanceScore"]) for x in direct["results"]]


# ------------------------------------------------- /v1/rerank (Cohere's API, copied by many)

def v1_rerank(srv, token, body):
    r = http_request(srv.port, "POST", "/v1/rerank", json.dumps(body).encode(),
                     {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return r.status, json.loads(r.body or b"{}")


def test_v1_rerank_speaks_coheres_api(front, key, double):
    status, body = v1_rerank(front, key["bearer_token"], {
        "model": RERANK, "query": QUERY, "top_n": 2, "return_documents": True,
        "documents": [DOCUMENTS[0], {"text": DOCUMENTS[1]}, *DOCUMENTS[2:]]})
    assert status == 200, body
    order = expected_order(QUERY, DOCUMENTS)
    assert [r["index"] for r in body["results"]] == order[:2], body
    assert body["results"][0]["document"] == {"text": DOCUMENTS[order[0]]}
    assert body["results"][0]["relevance_score"] == pytest.approx(relevance(QUERY, DOCUMENTS[order[0]]))
    assert body["meta"]["billed_units"] == {"search_units": 1} and body["model"] == RERANK
    assert double.last("/v2/rerank")["documents"] == DOCUMENTS


@pytest.mark.parametrize("change, param", [
    ({"documents": []}, "documents"),
    ({"top_n": 0}, "top_n"),
    ({"max_tokens_per_doc": 100}, "max_tokens_per_doc"),
    ({"model": CHAT}, None),
    ({"documents": "not a list"}, "documents"),
])
def test_v1_rerank_bad_input_is_an_openai_error(front, key, change, param):
    status, body = v1_rerank(front, key["bearer_token"], {"model": RERANK, "query": QUERY, "documents": DOCUMENTS,
                                                          **change})
    assert status == 400, body
    assert body["error"]["type"] == "invalid_request_error", body
    if param:
        assert body["error"]["param"] == param, body


def test_v1_rerank_needs_a_key(front):
    status, body = v1_rerank(front, "not-a-key", {"model": RERANK, "query": QUERY, "documents": DOCUMENTS})
    assert status == 401, body


@pytest.fixture(scope="module")
def cohere_client_of_basalt(front, key, tmp_path_factory, _hermetic_client_env):
    """A Basalt whose rerank model is the front's, reached as Cohere's API at /v1."""
    upstream = "upstream = " + inline_table(api="cohere", base_url=front.url + "/v1", model=RERANK,
                                            api_key_env="BASALT_TEST_FRONT_TOKEN", timeout_secs=30)
    yield from serve_front(tmp_path_factory, "rerank-via-v1", rerank_toml("basalt.rerank-via-v1-v1:0", upstream),
                           {"BASALT_TEST_FRONT_TOKEN": key["bearer_token"]})


def test_basalt_is_a_cohere_rerank_upstream(cohere_client_of_basalt, art):
    srv = cohere_client_of_basalt
    k = srv.cli_json("keys", "create", "--name", "via-v1", "--json")
    via = client(srv, k, "bedrock-agent-runtime").rerank(
        **rerank_request(DOCUMENTS, model="basalt.rerank-via-v1-v1:0", number=3))
    direct = art.rerank(**rerank_request(DOCUMENTS, number=3))
    assert [(x["index"], x["relevanceScore"]) for x in via["results"]] == [
        (x["index"], x["relevanceScore"]) for x in direct["results"]]


# ------------------------------------------------------------ reranking in retrieval

PASSAGES = {
    "rock-1": "Basalt forms when lava from volcanic eruptions cools quickly at the surface.",
    "rock-2": "Obsidian is volcanic glass; it forms when lava cools too fast for crystals to grow.",
    "food-1": "Bread rises because yeast ferments the sugars in the dough.",
    "sport-1": "A marathon is a long-distance race of about forty-two kilometres.",
    "rock-3": "Some rock forms from lava, some from sediment, some from heat and pressure.",
    "space-1": "Volcanic plains cover much of the surface of Venus.",
}
QUESTION = "Which rock forms from volcanic lava cooling?"


@pytest.fixture(scope="module")
def kb(front, key):
    agent = client(front, key, "bedrock-agent")
    kb_id = agent.create_knowledge_base(
        name="rerank-kb", roleArn=ROLE_ARN,
        knowledgeBaseConfiguration={"type": "VECTOR",
                                    "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": arn(EMBED)}},
        storageConfiguration=EMBEDDED,
    )["knowledgeBase"]["knowledgeBaseId"]
    ds_id = agent.create_data_source(knowledgeBaseId=kb_id, name="passages",
                                     dataSourceConfiguration={"type": "CUSTOM"})["dataSource"]["dataSourceId"]
    details = agent.ingest_knowledge_base_documents(
        knowledgeBaseId=kb_id, dataSourceId=ds_id,
        documents=[{"content": {"dataSourceType": "CUSTOM", "custom": {
            "customDocumentIdentifier": {"id": doc_id}, "sourceType": "IN_LINE",
            "inlineContent": {"type": "TEXT", "textContent": {"data": text}}}},
            "metadata": {"type": "IN_LINE_ATTRIBUTE", "inlineAttributes": [
                {"key": "topic", "value": {"type": "STRING", "stringValue": doc_id.split("-")[0]}}]}}
            for doc_id, text in PASSAGES.items()],
    )["documentDetails"]
    assert [d["status"] for d in details] == ["INDEXED"] * len(PASSAGES), details
    return kb_id


def reranking(number=None, metadata=None):
    config = {"modelConfiguration": {"modelArn": arn(RERANK)}}
    if number is not None:
        config["numberOfRerankedResults"] = number
    if metadata is not None:
        config["metadataConfiguration"] = metadata
    return {"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": config}


def test_retrieve_reranks_what_it_found(art, kb, double):
    plain = art.retrieve(knowledgeBaseId=kb, retrievalQuery={"text": QUESTION},
                         retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 6}})
    found = [r["content"]["text"] for r in plain["retrievalResults"]]
    r = art.retrieve(knowledgeBaseId=kb, retrievalQuery={"text": QUESTION},
                     retrievalConfiguration={"vectorSearchConfiguration": {
                         "numberOfResults": 6, "rerankingConfiguration": reranking(number=2)}})
    texts = [x["content"]["text"] for x in r["retrievalResults"]]
    best = sorted(found, key=lambda t: (-relevance(QUESTION, t), found.index(t)))[:2]
    assert texts == best, (texts, best)
    for x in r["retrievalResults"]:
        assert x["score"] == pytest.approx(relevance(QUESTION, x["content"]["text"]))
        assert x["metadata"]["topic"] in ("rock", "food", "sport", "space")
    sent = double.last("/v2/rerank")
    assert sent["query"] == QUESTION and sent["top_n"] == 2
    assert sorted(sent["documents"]) == sorted(found), "the reranker read the retrieved texts alone"


def test_retrieve_reranking_reads_the_selected_metadata(art, kb, double):
    art.retrieve(knowledgeBaseId=kb, retrievalQuery={"text": QUESTION},
                 retrievalConfiguration={"vectorSearchConfiguration": {
                     "numberOfResults": 3, "rerankingConfiguration": reranking(metadata={
                         "selectionMode": "SELECTIVE",
                         "selectiveModeConfiguration": {"fieldsToInclude": [{"fieldName": "topic"}]}})}})
    sent = double.last("/v2/rerank")["documents"]
    assert len(sent) == 3 and all("\n\ntopic: " in d for d in sent), sent
    assert not any("x-amz-bedrock-kb" in d for d in sent), sent
    art.retrieve(knowledgeBaseId=kb, retrievalQuery={"text": QUESTION},
                 retrievalConfiguration={"vectorSearchConfiguration": {
                     "numberOfResults": 3, "rerankingConfiguration": reranking(metadata={"selectionMode": "ALL"})}})
    sent = double.last("/v2/rerank")["documents"]
    assert all("topic: " in d and "x-amz-bedrock-kb-source-uri: " in d for d in sent), sent


@pytest.mark.parametrize("config, message", [
    ({"type": "BEDROCK_RERANKING_MODEL"}, "bedrockRerankingConfiguration is required"),
    (reranking(number=101), "numberOfRerankedResults"),
    (reranking(metadata={"selectionMode": "SOME"}), "selectionMode"),
    (reranking(metadata={"selectionMode": "SELECTIVE"}), "selectiveModeConfiguration"),
    ({"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {
        "modelConfiguration": {"modelArn": arn(EMBED)}}}, "not a reranking model"),
])
def test_bad_reranking_configurations_are_refused(front, key, kb, config, message):
    lax = client(front, key, "bedrock-agent-runtime", LAX)
    expect_client_error(lambda: lax.retrieve(
        knowledgeBaseId=kb, retrievalQuery={"text": QUESTION},
        retrievalConfiguration={"vectorSearchConfiguration": {"rerankingConfiguration": config}}),
        "ValidationException", 400, message_contains=message)


def test_retrieve_and_generate_answers_from_the_reranked_chunks(art, kb, double):
    r = art.retrieve_and_generate(
        input={"text": QUESTION},
        retrieveAndGenerateConfiguration={"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
            "knowledgeBaseId": kb, "modelArn": arn(CHAT),
            "retrievalConfiguration": {"vectorSearchConfiguration": {
                "numberOfResults": 6, "rerankingConfiguration": reranking(number=1)}}}})
    assert double.last("/v2/rerank")["query"] == QUESTION
    prompt = json.dumps(double.last("/v2/chat")["messages"])
    kept = [t for t in PASSAGES.values() if t in prompt]
    assert len(kept) == 1, f"only the one reranked chunk reaches the prompt: {kept}"
    assert relevance(QUESTION, kept[0]) == max(relevance(QUESTION, t) for t in PASSAGES.values())
    refs = [ref for c in r["citations"] for ref in c["retrievedReferences"]]
    assert all(ref["content"]["text"] == kept[0] for ref in refs), refs
