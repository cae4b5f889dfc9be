'use strict';
// Builds and signs Fabric proposals offline with Hyperledger's own client libraries, for the
// Rust wire-compatibility tests (tests/proposal_fabric_clients.rs).
//
//   node proposals.js build OUT_DIR MSPID CERT_FILE KEY_FILE
//     Writes <case>.bin (an encoded protos.SignedProposal) for each case plus manifest.json
//     (what each client put in: channel, chaincode, args, transient data, tx id).
//   node proposals.js roundtrip MSPID CERT_FILE KEY_FILE
//     Line protocol on stdin/stdout: prints a JSON line {case, signedProposal} per case and
//     reads back a JSON line {proposalResponse} (base64 of an encoded protos.ProposalResponse),
//     then hands that response to fabric-common as a peer's answer and prints what
//     fabric-common made of it: {case, errors, statuses, queryResults, envelope}.
//   node proposals.js send MSPID CERT_FILE KEY_FILE URL
//     Sends put, get (query), range (query), emit, whoami (query) and fail proposals with
//     fabric-common to the endorser at URL (grpc://host:port) and prints one JSON line per case:
//     {case, errors, statuses, messages, payloads, endorsed, signedProposal, proposalResponses}
//     (the last two base64 protobufs, for the test to verify signatures, hashes and rwsets).
const fs = require('fs');
const path = require('path');
const readline = require('readline');
const crypto = require('crypto');

const {Client, User} = require('fabric-common');
const fabproto6 = require('fabric-protos');
const grpc = require('@grpc/grpc-js');
const {connect, signers} = require('@hyperledger/fabric-gateway');
const gatewayProtos = require('@hyperledger/fabric-protos');

const CHANNEL = 'mychannel';
const CHAINCODE = 'basic';

function b64(bytes) {
    return Buffer.from(bytes).toString('base64');
}

function fabricCommon(mspid, certPem, keyPem) {
    const client = Client.newClient('e2e-client');
    const user = User.createUser('User1', '', mspid, certPem, keyPem);
    const idContext = client.newIdentityContext(user);
    const channel = client.newChannel(CHANNEL);
    return {client, channel, idContext};
}

// The fabric-common cases: name, kind (Endorsement or Query) and the build request.
const COMMON_CASES = [
    {name: 'put', kind: 'Endorsement', fcn: 'put', args: ['asset1', 'blue']},
    {
        name: 'transient',
        kind: 'Endorsement',
        fcn: 'putPrivate',
        args: ['asset2'],
        transient: {secret: 'shh', price: '42'},
    },
    {name: 'init', kind: 'Endorsement', fcn: 'InitLedger', args: [], init: true},
    {name: 'get', kind: 'Query', fcn: 'get', args: ['asset1']},
];

function buildCommon(fc, c) {
    const proposal = c.kind === 'Query' ? fc.channel.newQuery(CHAINCODE) : fc.channel.newEndorsement(CHAINCODE);
    const request = {fcn: c.fcn, args: c.args};
    if (c.transient) {
        request.transientMap = {};
        for (const [k, v] of Object.entries(c.transient)) {
            request.transientMap[k] = Buffer.from(v);
        }
    }
    if (c.init) {
        request.init = true;
    }
    proposal.build(fc.idContext, request);
    proposal.sign(fc.idContext);
    const signed = proposal.getSignedProposal();
    const bytes = fabproto6.protos.SignedProposal.encode(signed).finish();
    return {proposal, bytes, txId: fc.idContext.transactionId};
}

function describe(c, txId, client) {
    return {
        name: c.name,
        client,
        channel: CHANNEL,
        chaincode: CHAINCODE,
        args: [c.fcn, ...c.args],
        transient: c.transient || {},
        init: Boolean(c.init),
        txId,
    };
}

async function buildGateway(mspid, certPem, keyPem) {
    // No network traffic: a proposal is built and signed locally; the client is never dialled.
    const grpcClient = new grpc.Client('127.0.0.1:1', grpc.credentials.createInsecure());
    const signer = signers.newPrivateKeySigner(crypto.createPrivateKey(keyPem));
    const gateway = connect({
        client: grpcClient,
        identity: {mspId: mspid, credentials: Buffer.from(certPem)},
    });
    try {
        const contract = gateway.getNetwork(CHANNEL).getContract(CHAINCODE);
        const c = {name: 'gateway', fcn: 'put', args: ['asset3', 'green'], transient: {note: 'private note'}};
        const transientData = {note: Buffer.from(c.transient.note)};
        const unsigned = contract.newProposal(c.fcn, {arguments: c.args, transientData});
        // The gateway's offline-signing flow: sign the digest, attach the signature.
        const signature = await signer(unsigned.getDigest());
        const proposal = gateway.newSignedProposal(unsigned.getBytes(), signature);
        const proposed = gatewayProtos.gateway.ProposedTransaction.deserializeBinary(proposal.getBytes());
        const bytes = Buffer.from(proposed.getProposal().serializeBinary());
        return {c, bytes, txId: proposal.getTransactionId()};
    } finally {
        gateway.close();
        grpcClient.close();
    }
}

async function build(outDir, mspid, certFile, keyFile) {
    const certPem = fs.readFileSync(certFile, 'utf8');
    const keyPem = fs.readFileSync(keyFile, 'utf8');
    fs.mkdirSync(outDir, {recursive: true});
    const fc = fabricCommon(mspid, certPem, keyPem);
    const manifest = [];
    for (const c of COMMON_CASES) {
        const {bytes, txId} = buildCommon(fc, c);
        fs.writeFileSync(path.join(outDir, `${c.name}.bin`), bytes);
        manifest.push(describe(c, txId, 'fabric-common'));
    }
    const gw = await buildGateway(mspid, certPem, keyPem);
    fs.writeFileSync(path.join(outDir, `${gw.c.name}.bin`), gw.bytes);
    manifest.push(describe(gw.c, gw.txId, '@hyperledger/fabric-gateway'));
    fs.writeFileSync(path.join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2));
}

// A stand-in for the gRPC stub of one peer: answers with the bytes the test supplies, decoded
// exactly as fabric-common's gRPC service definition decodes a peer's answer.
function endorserAnswering(fc, mspid, responseBytes) {
    const endorser = fc.client.newEndorser('peer0', mspid);
    endorser.connected = true;
    endorser.endpoint = {url: 'grpc://test-stub:7051'};
    endorser.service = {
        processProposal(_signed, callback) {
            callback(null, fabproto6.protos.ProposalResponse.decode(responseBytes));
        },
    };
    endorser.addChaincode(CHAINCODE);
    return endorser;
}

async function roundtrip(mspid, certFile, keyFile) {
    const certPem = fs.readFileSync(certFile, 'utf8');
    const keyPem = fs.readFileSync(keyFile, 'utf8');
    const fc = fabricCommon(mspid, certPem, keyPem);
    const lines = readline.createInterface({input: process.stdin})[Symbol.asyncIterator]();
    const cases = [
        COMMON_CASES[0], // put: endorsed, then built into a transaction envelope
        COMMON_CASES[3], // get: a query, its result read back
        {name: 'failing', kind: 'Endorsement', fcn: 'fail', args: []},
        {name: 'status0', kind: 'Endorsement', fcn: 'put', args: ['x', 'y']},
    ];
    for (const c of cases) {
        const {proposal, bytes} = buildCommon(fc, c);
        process.stdout.write(JSON.stringify({case: c.name, signedProposal: b64(bytes)}) + '\n');
        const next = await lines.next();
        if (next.done) {
            throw new Error('stdin closed before the proposal response arrived');
        }
        const answer = JSON.parse(next.value);
        const endorser = endorserAnswering(fc, mspid, Buffer.from(answer.proposalResponse, 'base64'));
        const result = await proposal.send({targets: [endorser], requestTimeout: 5000});
        const report = {
            case: c.name,
            errors: result.errors.map((e) => e.message),
            statuses: result.responses.map((r) => r.response.status),
            messages: result.responses.map((r) => r.response.message),
            queryResults: (result.queryResults || []).map(b64),
        };
        if (c.kind === 'Endorsement') {
            try {
                const commit = proposal.newCommit();
                commit.build(fc.idContext);
                commit.sign(fc.idContext);
                const envelope = commit.getSignedEnvelope();
                report.envelope = b64(fabproto6.common.Envelope.encode(envelope).finish());
            } catch (e) {
                report.commitError = e.message;
            }
        }
        process.stdout.write(JSON.stringify(report) + '\n');
    }
}

async function send(mspid, certFile, keyFile, url) {
    const fc = fabricCommon(mspid, fs.readFileSync(certFile, 'utf8'), fs.readFileSync(keyFile, 'utf8'));
    const endorser = fc.client.newEndorser('peer0', mspid);
    await endorser.connect(fc.client.newEndpoint({url, requestTimeout: 30000}));
    const cases = [
        {name: 'put', kind: 'Endorsement', fcn: 'put', args: ['asset1', 'blue']},
        {name: 'get', kind: 'Query', fcn: 'get', args: ['asset1']},
        {name: 'range', kind: 'Query', fcn: 'range', args: ['asset0', 'asset9']},
        {name: 'emit', kind: 'Endorsement', fcn: 'emit', args: ['Transfer', 'payload-1']},
        {name: 'whoami', kind: 'Query', fcn: 'whoami', args: []},
        {name: 'fail', kind: 'Endorsement', fcn: 'fail', args: ['boom']},
    ];
    for (const c of cases) {
        const {proposal, bytes} = buildCommon(fc, c);
        const result = await proposal.send({targets: [endorser], requestTimeout: 60000});
        const report = {
            case: c.name,
            errors: result.errors.map((e) => e.message),
            statuses: result.responses.map((r) => r.response.status),
            messages: result.responses.map((r) => r.response.message),
            payloads: result.responses.map((r) => b64(r.response.payload || Buffer.alloc(0))),
            endorsed: result.responses.map((r) => Boolean(r.endorsement)),
            signedProposal: b64(bytes),
            proposalResponses: result.responses.map((r) => b64(fabproto6.protos.ProposalResponse.encode(r).finish())),
        };
        process.stdout.write(JSON.stringify(report) + '\n');
    }
    endorser.disconnect();
}

async function main() {
    const [mode, ...args] = process.argv.slice(2);
    if (mode === 'build' && args.length === 4) {
        await build(...args);
    } else if (mode === 'roundtrip' && args.length === 3) {
        await roundtrip(...args);
    } else if (mode === 'send' && args.length === 4) {
        await send(...args);
    } else {
        throw new Error('usage: proposals.js build OUT_DIR MSPID CERT KEY | roundtrip MSPID CERT KEY | send MSPID CERT KEY URL');
    }
}

main().catch((e) => {
    process.stderr.write(`${e.stack || e}\n`);
    process.exit(1);
});
