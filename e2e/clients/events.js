'use strict';
// Reads committed blocks through fabric-common 2.2's EventService (the peer's Deliver service),
// for tests/endorser_gateway.rs. DEV_JSON is the file `chaincode-operator dev` writes.
//
//   node events.js DEV_JSON START END BLOCK_TYPE
//     eventService.build(idContext, {startBlock: START, endBlock: END, blockType}) + sign() +
//     send() to an Eventer on the dev endpoint (TLS), a block listener collecting every block.
//     BLOCK_TYPE is full, filtered or private. Prints {blocks, closed}: per block its number and
//     per transaction its id, header type, validation code and chaincode event names, as
//     fabric-common's BlockDecoder decoded them; `closed` is why the service ended.
const fs = require('fs');

const {Client, User} = require('fabric-common');
const fabproto6 = require('fabric-protos');

function codeName(code) {
    return typeof code === 'string' ? code : fabproto6.protos.TxValidationCode[code];
}

function describeFull(block) {
    const filter = block.metadata.metadata[2];
    return {
        number: Number(block.header.number),
        txs: block.data.data.map((envelope, index) => {
            const header = envelope.payload.header.channel_header;
            const events = [];
            if (header.typeString === 'ENDORSER_TRANSACTION') {
                for (const action of envelope.payload.data.actions || []) {
                    const event = action.payload.action.proposal_response_payload.extension.events;
                    if (event && event.event_name) {
                        events.push(event.event_name);
                    }
                }
            }
            return {id: header.tx_id, type: header.typeString, code: codeName(filter[index]), events};
        }),
    };
}

function describeFiltered(block) {
    return {
        number: Number(block.number),
        txs: block.filtered_transactions.map((tx) => ({
            id: tx.txid,
            type: tx.typeString,
            code: codeName(tx.tx_validation_code),
            events: (tx.transaction_actions.chaincode_actions || []).map((a) => a.chaincode_event.event_name),
        })),
    };
}

async function main() {
    const [devJson, start, end, blockType] = process.argv.slice(2);
    const info = JSON.parse(fs.readFileSync(devJson, 'utf8'));
    const client = Client.newClient('events');
    const user = User.createUser('User1', '', info.mspId, fs.readFileSync(info.certPath, 'utf8'), fs.readFileSync(info.keyPath, 'utf8'));
    const idContext = client.newIdentityContext(user);
    const channel = client.newChannel(info.channel);
    const eventer = client.newEventer('peer0');
    const options = info.tlsRootCert
        ? {url: `grpcs://${info.endpoint}`, pem: fs.readFileSync(info.tlsRootCert, 'utf8'), 'ssl-target-name-override': info.tlsHostName}
        : {url: `grpc://${info.endpoint}`};
    await eventer.connect(client.newEndpoint({...options, requestTimeout: 60000}));
    const eventService = channel.newEventService('deliver');
    eventService.setTargets([eventer]);
    eventService.build(idContext, {startBlock: Number(start), endBlock: Number(end), blockType});
    eventService.sign(idContext);

    const blocks = [];
    const closed = new Promise((resolve) => {
        eventService.registerBlockListener(
            (error, event) => {
                if (error) {
                    resolve(error.message);
                    return;
                }
                if (event.block) {
                    blocks.push(describeFull(event.block));
                    if (event.privateData !== undefined && event.privateData !== null) {
                        blocks[blocks.length - 1].privateData = Object.keys(event.privateData).length;
                    }
                } else {
                    blocks.push(describeFiltered(event.filteredBlock));
                }
            },
            // Not bound to the end block (that would unregister it first): it also hears why the
            // service closed.
            {unregister: false},
        );
    });
    await eventService.send();
    const reason = await Promise.race([
        closed,
        new Promise((resolve) => setTimeout(() => resolve('timed out after 60s'), 60000)),
    ]);
    eventService.close();
    eventer.disconnect();
    process.stdout.write(JSON.stringify({blocks, closed: reason}) + '\n');
    process.exit(0);
}

main().catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n`);
    process.exit(1);
});
