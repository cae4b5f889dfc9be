'use strict';
// Decodes our committed blocks with Hyperledger's own client library, for the Rust
// wire-compatibility test of the block log (tests/endorser_commit.rs).
//
//   node blocks.js < BLOCKS
//     Reads one base64 encoded common.Block per stdin line; prints one JSON line per block with
//     what fabric-common's BlockDecoder read (number, hashes, transactions filter, and per
//     transaction its tx id, channel, type, writes and chaincode event), plus the data hash and
//     header hash computed here independently: sha256 over the concatenated envelopes, and
//     sha256 of the header's ASN.1 DER encoding made by jsrsasign.
const readline = require('readline');
const crypto = require('crypto');

const {BlockDecoder} = require('fabric-common');
const fabproto6 = require('fabric-protos');
const {KJUR, BigInteger} = require('jsrsasign');

function hex(bytes) {
    return Buffer.from(bytes || []).toString('hex');
}

function sha256(bytes) {
    return crypto.createHash('sha256').update(bytes).digest('hex');
}

// Fabric's block header hash: sha256(ASN.1 DER SEQUENCE {INTEGER number, OCTET STRING
// previous_hash, OCTET STRING data_hash}).
function headerHash(header) {
    const der = KJUR.asn1.ASN1Util.newObject({
        seq: [
            {int: {bigint: new BigInteger(header.number.toString(), 10)}},
            {octstr: {hex: hex(header.previous_hash)}},
            {octstr: {hex: hex(header.data_hash)}},
        ],
    }).getEncodedHex();
    return sha256(Buffer.from(der, 'hex'));
}

// What a config transaction configures: per application org its MSP name and number of root
// certificates, and the channel-level and application-level policy names.
function describeConfig(configEnvelope) {
    const channelGroup = configEnvelope.config.channel_group;
    const application = channelGroup.groups.Application;
    const orgs = {};
    for (const [name, group] of Object.entries(application.groups)) {
        const msp = group.values.MSP.value.config;
        orgs[name] = {mspName: msp.name, rootCerts: msp.root_certs.length, policies: Object.keys(group.policies).sort()};
    }
    return {
        sequence: configEnvelope.config.sequence.toString(),
        values: Object.keys(channelGroup.values).sort(),
        policies: Object.keys(channelGroup.policies).sort(),
        applicationPolicies: Object.keys(application.policies).sort(),
        hashingAlgorithm: channelGroup.values.HashingAlgorithm.value.name,
        orgs,
    };
}

function describeTransaction(envelope) {
    const channelHeader = envelope.payload.header.channel_header;
    const tx = {
        txId: channelHeader.tx_id,
        channel: channelHeader.channel_id,
        type: channelHeader.typeString,
        writes: [],
        events: [],
    };
    if (tx.type === 'CONFIG') {
        tx.config = describeConfig(envelope.payload.data);
        return tx;
    }
    for (const action of envelope.payload.data.actions || []) {
        const extension = action.payload.action.proposal_response_payload.extension;
        for (const ns of extension.results.ns_rwset) {
            for (const write of ns.rwset.writes) {
                tx.writes.push({namespace: ns.namespace, key: write.key, value: Buffer.from(write.value).toString()});
            }
        }
        if (extension.events && extension.events.event_name) {
            tx.events.push({
                chaincodeId: extension.events.chaincode_id,
                txId: extension.events.tx_id,
                name: extension.events.event_name,
                payload: Buffer.from(extension.events.payload).toString(),
            });
        }
    }
    return tx;
}

async function main() {
    const lines = readline.createInterface({input: process.stdin});
    for await (const line of lines) {
        if (!line.trim()) {
            continue;
        }
        const bytes = Buffer.from(line, 'base64');
        const block = BlockDecoder.decode(bytes);
        const raw = fabproto6.common.Block.decode(bytes);
        const header = raw.header;
        process.stdout.write(JSON.stringify({
            number: block.header.number.toString(),
            previousHash: hex(block.header.previous_hash),
            dataHash: hex(block.header.data_hash),
            computedDataHash: sha256(Buffer.concat(raw.data.data.map((d) => Buffer.from(d)))),
            computedHeaderHash: headerHash(header),
            filter: block.metadata.metadata[2],
            txs: block.data.data.map(describeTransaction),
        }) + '\n');
    }
}

main().catch((e) => {
    process.stderr.write(`${e.stack || e}\n`);
    process.exit(1);
});
