'use strict';
// Drives `_lifecycle` with Hyperledger's own client libraries, for tests/endorser_lifecycle.rs:
// fabric-common 2.2 sends the proposals and fabric-protos (the protobufjs bundle fabric-common
// ships) encodes every *Args message and decodes every *Result, so the endorser is checked against
// Fabric's encoding of the lifecycle messages, not against its own.
//
//   node lifecycle.js send MSPID CERT_FILE KEY_FILE URL PACKAGE_FILE
//     As the identity in CERT/KEY (an org admin), on channel mychannel: InstallChaincode,
//     QueryInstalledChaincodes, ApproveChaincodeDefinitionForMyOrg (sequence 1, version 1.0, one
//     private data collection), CheckCommitReadiness, CommitChaincodeDefinition,
//     QueryChaincodeDefinition, then an invocation of the defined chaincode. Prints one JSON line
//     per case: {case, errors, statuses, messages, endorsed, result}.
const fs = require('fs');

const {Client, User} = require('fabric-common');
const fabproto6 = require('fabric-protos');

const CHANNEL = 'mychannel';
const NAME = 'basic';
const {lifecycle} = fabproto6;

// A collection definition as the peer CLI reads it from a collections JSON file.
const COLLECTIONS = {
    config: [
        {
            static_collection_config: {
                name: 'private1',
                member_orgs_policy: {
                    signature_policy: {
                        version: 0,
                        rule: {n_out_of: {n: 1, rules: [{signed_by: 0}]}},
                        identities: [{principal_classification: 0, principal: Buffer.from('Org1MSP')}],
                    },
                },
                required_peer_count: 0,
                maximum_peer_count: 1,
                block_to_live: 1000,
                member_only_read: true,
            },
        },
    ],
};

function definition(extra) {
    return {sequence: 1, name: NAME, version: '1.0', collections: COLLECTIONS, ...extra};
}

// Sends one proposal to `chaincode`; `_lifecycle` takes the function name and one encoded *Args.
async function invoke(fc, endorser, chaincode, fcn, args) {
    const proposal = fc.channel.newEndorsement(chaincode);
    proposal.build(fc.idContext, {fcn, args});
    proposal.sign(fc.idContext);
    return proposal.send({targets: [endorser], requestTimeout: 120000});
}

function call(fc, endorser, fcn, argBytes) {
    return invoke(fc, endorser, '_lifecycle', fcn, [Buffer.from(argBytes)]);
}

function report(name, result, decode) {
    const responses = result.responses;
    const ok = responses.length === 1 && responses[0].response.status === 200;
    return {
        case: name,
        errors: result.errors.map((e) => e.message),
        statuses: responses.map((r) => r.response.status),
        messages: responses.map((r) => r.response.message),
        endorsed: responses.map((r) => Boolean(r.endorsement)),
        result: ok && decode ? decode(responses[0].response.payload) : null,
    };
}

async function send(mspid, certFile, keyFile, url, packageFile) {
    const client = Client.newClient('e2e-lifecycle');
    const user = User.createUser('Admin', '', mspid, fs.readFileSync(certFile, 'utf8'), fs.readFileSync(keyFile, 'utf8'));
    const fc = {idContext: client.newIdentityContext(user), channel: client.newChannel(CHANNEL)};
    const endorser = client.newEndorser('peer0', mspid);
    await endorser.connect(client.newEndpoint({url, requestTimeout: 120000}));
    const print = (r) => process.stdout.write(JSON.stringify(r) + '\n');
    const encode = (type, obj) => type.encode(type.fromObject(obj)).finish();
    const toObject = (type) => (payload) => type.toObject(type.decode(payload), {longs: Number, defaults: true});

    const install = await call(fc, endorser, 'InstallChaincode',
        encode(lifecycle.InstallChaincodeArgs, {chaincode_install_package: fs.readFileSync(packageFile)}));
    const installed = report('install', install, toObject(lifecycle.InstallChaincodeResult));
    print(installed);
    const packageId = installed.result ? installed.result.package_id : '';

    print(report('queryinstalled',
        await call(fc, endorser, 'QueryInstalledChaincodes', encode(lifecycle.QueryInstalledChaincodesArgs, {})),
        toObject(lifecycle.QueryInstalledChaincodesResult)));

    print(report('approve',
        await call(fc, endorser, 'ApproveChaincodeDefinitionForMyOrg',
            encode(lifecycle.ApproveChaincodeDefinitionForMyOrgArgs,
                definition({source: {local_package: {package_id: packageId}}}))),
        toObject(lifecycle.ApproveChaincodeDefinitionForMyOrgResult)));

    print(report('checkcommitreadiness',
        await call(fc, endorser, 'CheckCommitReadiness',
            encode(lifecycle.CheckCommitReadinessArgs, definition({}))),
        toObject(lifecycle.CheckCommitReadinessResult)));

    print(report('commit',
        await call(fc, endorser, 'CommitChaincodeDefinition',
            encode(lifecycle.CommitChaincodeDefinitionArgs, definition({}))),
        toObject(lifecycle.CommitChaincodeDefinitionResult)));

    print(report('querycommitted',
        await call(fc, endorser, 'QueryChaincodeDefinition',
            encode(lifecycle.QueryChaincodeDefinitionArgs, {name: NAME})),
        (payload) => {
            const result = toObject(lifecycle.QueryChaincodeDefinitionResult)(payload);
            // Enough of the collection package to show it came back as Fabric encoded it.
            result.collection_names = (result.collections.config || [])
                .map((c) => c.static_collection_config.name);
            delete result.collections;
            delete result.validation_parameter;
            return result;
        }));

    print(report('invoke', await invoke(fc, endorser, NAME, 'put', ['asset1', 'blue']), (p) => Buffer.from(p).toString()));
    endorser.disconnect();
}

async function main() {
    const [mode, ...args] = process.argv.slice(2);
    if (mode === 'send' && args.length === 5) {
        await send(...args);
    } else {
        throw new Error('usage: lifecycle.js send MSPID CERT KEY URL PACKAGE_FILE');
    }
}

main().catch((err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
});
