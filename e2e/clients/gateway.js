'use strict';
// Drives an endorser through Hyperledger's own @hyperledger/fabric-gateway client, for
// tests/endorser_gateway.rs. DEV_JSON is the file `chaincode-operator dev` writes.
//
//   node gateway.js DEV_JSON run KEY
//     submit put(KEY) then evaluate get(KEY); two getput transactions endorsed against the same
//     read version then submitted; a failing evaluate and submit; a chaincode event received over
//     ChaincodeEvents. Prints one JSON object with what the client saw.
//   node gateway.js DEV_JSON read KEY
//     Prints {value} from evaluate get(KEY).
//   node gateway.js DEV_JSON put KEY VALUE
//     submit put(KEY, VALUE); prints {transactionId, code, blockNumber}.
//   node gateway.js DEV_JSON blocks CHECKPOINT_PREFIX UNTIL
//     getBlockEvents, getFilteredBlockEvents and getBlockAndPrivateDataEvents, each with a file
//     checkpointer (CHECKPOINT_PREFIX-full.json, -filtered.json, -private.json; start block 0
//     when it has no checkpoint), read up to block UNTIL, checkpointing every block. Prints
//     {full, filtered, private}: per block its number and per transaction id, header type,
//     validation code and chaincode events (name, payload length).
//   node gateway.js DEV_JSON submit KEY VALUE
//     submit put(KEY, VALUE), then evaluate get(KEY). Prints {submitResult, status, blockNumber,
//     evaluated}.
//   node gateway.js DEV_JSON private COLLECTION KEY VALUE
//     submit putPrivate(COLLECTION, KEY) with VALUE in the transient map, evaluate getPrivate,
//     getPrivateHash and rangePrivate, read the put's block over Deliver (raw bytes, base64, and
//     its private data as privateBlock prints it),
//     submit delPrivate and evaluate getPrivate again, put again and purgePrivate. Prints what it
//     saw.
//   node gateway.js DEV_JSON privateBlock NUMBER
//     the private data of block NUMBER from getBlockAndPrivateDataEvents: {number, entries:
//     [{index, namespace, collection, rwset (base64 KVRWSet)}]}.
//   node gateway.js DEV_JSON getPrivate COLLECTION KEY
//     evaluate getPrivate and submit putPrivate (transient "x"); prints {evaluate, submit}, each
//     a value or an error.
const fs = require('fs');
const crypto = require('crypto');

const grpc = require('@grpc/grpc-js');
const {checkpointers, connect, signers} = require('@hyperledger/fabric-gateway');
const {common, peer} = require('@hyperledger/fabric-protos');

const utf8 = new TextDecoder();

function codeName(code) {
    return Object.keys(peer.TxValidationCode).find((name) => peer.TxValidationCode[name] === code) ?? String(code);
}

function open(info) {
    const client = info.tlsRootCert
        ? new grpc.Client(info.endpoint, grpc.credentials.createSsl(fs.readFileSync(info.tlsRootCert)), {
              'grpc.ssl_target_name_override': info.tlsHostName,
          })
        : new grpc.Client(info.endpoint, grpc.credentials.createInsecure());
    const gateway = connect({
        client,
        identity: {mspId: info.mspId, credentials: fs.readFileSync(info.certPath)},
        signer: signers.newPrivateKeySigner(crypto.createPrivateKey(fs.readFileSync(info.keyPath))),
        evaluateOptions: () => ({deadline: Date.now() + 60000}),
        endorseOptions: () => ({deadline: Date.now() + 60000}),
        submitOptions: () => ({deadline: Date.now() + 60000}),
        commitStatusOptions: () => ({deadline: Date.now() + 60000}),
    });
    const network = gateway.getNetwork(info.channel);
    return {client, gateway, network, contract: network.getContract(info.chaincode)};
}

function describeError(err) {
    return {
        type: err.constructor.name,
        code: err.code,
        message: err.message,
        details: (err.details ?? []).map((d) => ({mspId: d.mspId, address: d.address, message: d.message})),
        // A CommitError's code is the transaction's validation code, not a gRPC status.
        status: err.constructor.name === 'CommitError' ? codeName(err.code) : undefined,
    };
}

async function run(info, key) {
    const {contract, network} = open(info);
    const out = {};

    // Listen before submitting so the event of the emit below is seen.
    const events = await network.getChaincodeEvents(info.chaincode);

    out.submitResult = utf8.decode(await contract.submitTransaction('put', key, 'v1'));
    out.evaluated = utf8.decode(await contract.evaluateTransaction('get', key));

    // Two transactions endorsed against the same committed version of KEY.
    const first = await contract.newProposal('getput', {arguments: [key, 'first']}).endorse();
    const second = await contract.newProposal('getput', {arguments: [key, 'second']}).endorse();
    out.firstRead = utf8.decode(first.getResult());
    out.secondRead = utf8.decode(second.getResult());
    const firstStatus = await (await first.submit()).getStatus();
    const secondStatus = await (await second.submit()).getStatus();
    out.statuses = [firstStatus, secondStatus].map((s) => ({
        code: codeName(s.code),
        successful: s.successful,
        blockNumber: Number(s.blockNumber),
        transactionId: s.transactionId,
    }));
    out.afterConflict = utf8.decode(await contract.evaluateTransaction('get', key));

    try {
        await contract.evaluateTransaction('fail', 'boom');
        out.evaluateError = null;
    } catch (err) {
        out.evaluateError = describeError(err);
    }
    try {
        await contract.submitTransaction('fail', 'boom');
        out.submitError = null;
    } catch (err) {
        out.submitError = describeError(err);
    }

    const emitted = await contract.submitAsync('emit', {arguments: ['created', key]});
    out.emitTransactionId = emitted.getTransactionId();
    out.emitStatus = codeName((await emitted.getStatus()).code);
    for await (const event of events) {
        out.event = {
            chaincodeName: event.chaincodeName,
            eventName: event.eventName,
            payload: utf8.decode(event.payload),
            transactionId: event.transactionId,
            blockNumber: Number(event.blockNumber),
        };
        break;
    }
    events.close();
    return out;
}

async function read(info, key) {
    const {contract} = open(info);
    return {value: utf8.decode(await contract.evaluateTransaction('get', key))};
}

async function put(info, key, value) {
    const {contract} = open(info);
    const submitted = await contract.submitAsync('put', {arguments: [key, value]});
    const status = await submitted.getStatus();
    return {transactionId: submitted.getTransactionId(), code: codeName(status.code), blockNumber: Number(status.blockNumber)};
}

function headerTypeName(type) {
    return Object.keys(common.HeaderType).find((name) => common.HeaderType[name] === type) ?? String(type);
}

// A full block as the application sees it, decoded with fabric-protos.
function describeBlock(block) {
    const filter = block.getMetadata().getMetadataList_asU8()[common.BlockMetadataIndex.TRANSACTIONS_FILTER];
    const txs = block.getData().getDataList_asU8().map((bytes, index) => {
        const payload = common.Payload.deserializeBinary(common.Envelope.deserializeBinary(bytes).getPayload_asU8());
        const header = common.ChannelHeader.deserializeBinary(payload.getHeader().getChannelHeader_asU8());
        const events = [];
        if (header.getType() === common.HeaderType.ENDORSER_TRANSACTION) {
            for (const action of peer.Transaction.deserializeBinary(payload.getData_asU8()).getActionsList()) {
                const endorsed = peer.ChaincodeActionPayload.deserializeBinary(action.getPayload_asU8()).getAction();
                const prp = peer.ProposalResponsePayload.deserializeBinary(endorsed.getProposalResponsePayload_asU8());
                const event = peer.ChaincodeEvent.deserializeBinary(
                    peer.ChaincodeAction.deserializeBinary(prp.getExtension_asU8()).getEvents_asU8());
                if (event.getEventName()) {
                    events.push({name: event.getEventName(), payloadLength: event.getPayload_asU8().length});
                }
            }
        }
        return {id: header.getTxId(), type: headerTypeName(header.getType()), code: codeName(filter[index]), events};
    });
    return {number: Number(block.getHeader().getNumber()), txs};
}

function describeFilteredBlock(block) {
    const txs = block.getFilteredTransactionsList().map((tx) => ({
        id: tx.getTxid(),
        type: headerTypeName(tx.getType()),
        code: codeName(tx.getTxValidationCode()),
        events: (tx.getTransactionActions()?.getChaincodeActionsList() ?? [])
            .map((action) => action.getChaincodeEvent())
            .map((event) => ({name: event.getEventName(), payloadLength: event.getPayload_asU8().length})),
    }));
    return {number: Number(block.getNumber()), channel: block.getChannelId(), txs};
}

async function readBlocks(network, kind, checkpointPath, until) {
    const checkpointer = await checkpointers.file(checkpointPath);
    const options = {checkpoint: checkpointer, startBlock: BigInt(0)};
    const events =
        kind === 'full'
            ? await network.getBlockEvents(options)
            : kind === 'filtered'
              ? await network.getFilteredBlockEvents(options)
              : await network.getBlockAndPrivateDataEvents(options);
    const blocks = [];
    try {
        for await (const event of events) {
            let described;
            if (kind === 'full') {
                described = describeBlock(event);
            } else if (kind === 'filtered') {
                described = describeFilteredBlock(event);
            } else {
                described = describeBlock(event.getBlock());
                described.privateDataEntries = event.getPrivateDataMapMap().getLength();
            }
            blocks.push(described);
            await checkpointer.checkpointBlock(BigInt(described.number));
            if (described.number >= until) {
                break;
            }
        }
    } finally {
        events.close();
    }
    return blocks;
}

async function blocks(info, checkpointPrefix, until) {
    const {network} = open(info);
    const out = {};
    for (const kind of ['full', 'filtered', 'private']) {
        out[kind] = await readBlocks(network, kind, `${checkpointPrefix}-${kind}.json`, Number(until));
    }
    return out;
}

async function submit(info, key, value) {
    const {contract} = open(info);
    const submitted = await contract.submitAsync('put', {arguments: [key, value]});
    const status = await submitted.getStatus();
    return {
        submitResult: utf8.decode(submitted.getResult()),
        status: codeName(status.code),
        blockNumber: Number(status.blockNumber),
        evaluated: utf8.decode(await contract.evaluateTransaction('get', key)),
    };
}

async function rawBlock(network, number) {
    const events = await network.getBlockEvents({startBlock: BigInt(number)});
    try {
        for await (const block of events) {
            return Buffer.from(block.serializeBinary()).toString('base64');
        }
    } finally {
        events.close();
    }
    return null;
}

// The private data of block NUMBER as getBlockAndPrivateDataEvents delivers it: per transaction
// index, namespace and collection, the private KVRWSet bytes in base64.
async function privateBlock(info, number) {
    const {network} = open(info);
    const events = await network.getBlockAndPrivateDataEvents({startBlock: BigInt(number)});
    try {
        for await (const event of events) {
            const entries = [];
            event.getPrivateDataMapMap().forEach((set, index) => {
                for (const ns of set.getNsPvtRwsetList()) {
                    for (const coll of ns.getCollectionPvtRwsetList()) {
                        entries.push({
                            index: Number(index),
                            namespace: ns.getNamespace(),
                            collection: coll.getCollectionName(),
                            rwset: Buffer.from(coll.getRwset_asU8()).toString('base64'),
                        });
                    }
                }
            });
            return {number: Number(event.getBlock().getHeader().getNumber()), entries};
        }
    } finally {
        events.close();
    }
    return null;
}

async function privateData(info, collection, key, value) {
    const {contract, network} = open(info);
    const out = {};
    const put = await contract.submitAsync('putPrivate', {
        arguments: [collection, key],
        transientData: {value},
    });
    const putStatus = await put.getStatus();
    out.put = {result: utf8.decode(put.getResult()), code: codeName(putStatus.code), blockNumber: Number(putStatus.blockNumber)};
    out.get = utf8.decode(await contract.evaluateTransaction('getPrivate', collection, key));
    out.hash = utf8.decode(await contract.evaluateTransaction('getPrivateHash', collection, key));
    out.range = JSON.parse(utf8.decode(await contract.evaluateTransaction('rangePrivate', collection, '', '')));
    out.block = await rawBlock(network, putStatus.blockNumber);
    out.privateBlock = await privateBlock(info, putStatus.blockNumber);
    const del = await contract.submitAsync('delPrivate', {arguments: [collection, key]});
    out.delCode = codeName((await del.getStatus()).code);
    out.afterDelete = utf8.decode(await contract.evaluateTransaction('getPrivate', collection, key));
    out.hashAfterDelete = utf8.decode(await contract.evaluateTransaction('getPrivateHash', collection, key));
    // Put again, then purge: the value and its hash are gone.
    const again = await contract.submitAsync('putPrivate', {arguments: [collection, key], transientData: {value}});
    out.putAgainCode = codeName((await again.getStatus()).code);
    const purge = await contract.submitAsync('purgePrivate', {arguments: [collection, key]});
    out.purgeCode = codeName((await purge.getStatus()).code);
    out.afterPurge = utf8.decode(await contract.evaluateTransaction('getPrivate', collection, key));
    out.hashAfterPurge = utf8.decode(await contract.evaluateTransaction('getPrivateHash', collection, key));
    return out;
}

async function getPrivate(info, collection, key) {
    const {contract} = open(info);
    const out = {};
    try {
        out.evaluate = {value: utf8.decode(await contract.evaluateTransaction('getPrivate', collection, key))};
    } catch (err) {
        out.evaluate = {error: describeError(err)};
    }
    try {
        await contract.submit('putPrivate', {arguments: [collection, key], transientData: {value: 'x'}});
        out.submit = {value: 'stored'};
    } catch (err) {
        out.submit = {error: describeError(err)};
    }
    out.hash = utf8.decode(await contract.evaluateTransaction('getPrivateHash', collection, key));
    return out;
}

async function main() {
    const [devJson, command, ...args] = process.argv.slice(2);
    const info = JSON.parse(fs.readFileSync(devJson, 'utf8'));
    const commands = {run, read, put, blocks, submit, private: privateData, getPrivate, privateBlock};
    if (!commands[command]) {
        throw new Error(`unknown command ${command}`);
    }
    const result = await commands[command](info, ...args);
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(0);
}

main().catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n${JSON.stringify(describeError(err))}\n`);
    process.exit(1);
});
