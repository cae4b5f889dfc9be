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
//   node gateway.js DEV_JSON submit KEY VALUE
//     submit put(KEY, VALUE), then evaluate get(KEY). Prints {submitResult, status, blockNumber,
//     evaluated}.
const fs = require('fs');
const crypto = require('crypto');

const grpc = require('@grpc/grpc-js');
const {connect, signers} = require('@hyperledger/fabric-gateway');
const {peer} = require('@hyperledger/fabric-protos');

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

async function main() {
    const [devJson, command, key, value] = process.argv.slice(2);
    const info = JSON.parse(fs.readFileSync(devJson, 'utf8'));
    const commands = {run: () => run(info, key), read: () => read(info, key), submit: () => submit(info, key, value)};
    const result = await (commands[command] ?? commands.read)();
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(0);
}

main().catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n${JSON.stringify(describeError(err))}\n`);
    process.exit(1);
});
