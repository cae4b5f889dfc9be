'use strict';
// Encodes Fabric messages with @hyperledger/fabric-protos (the package fabric-shim uses) and prints
// one JSON line per message: {"name": ..., "hex": ...}. tests/stream_wire.rs decodes them with the
// crate's generated types, checks the fields and re-encodes them byte for byte.
const { peer, common, msp, ledger } = require('@hyperledger/fabric-protos');
// The Timestamp class fabric-protos itself links against.
const { Timestamp } = require('google-protobuf/google/protobuf/timestamp_pb');
const { kvrwset } = ledger.rwset;

const out = [];
const emit = (name, msg) => out.push({ name, hex: Buffer.from(msg.serializeBinary()).toString('hex') });

const ts = new Timestamp();
ts.setSeconds(1700000000);
ts.setNanos(42);

const id = new msp.SerializedIdentity();
id.setMspid('Org1MSP');
id.setIdBytes(Buffer.from('-----BEGIN CERTIFICATE-----\n'));
emit('SerializedIdentity', id);

const ch = new common.ChannelHeader();
ch.setType(common.HeaderType.ENDORSER_TRANSACTION);
ch.setVersion(0);
ch.setTimestamp(ts);
ch.setChannelId('mychannel');
ch.setTxId('abc123');
ch.setEpoch(0);
const ext = new peer.ChaincodeHeaderExtension();
const ccid = new peer.ChaincodeID();
ccid.setName('mycc');
ext.setChaincodeId(ccid);
ch.setExtension$(ext.serializeBinary());
emit('ChannelHeader', ch);

const sh = new common.SignatureHeader();
sh.setCreator(id.serializeBinary());
sh.setNonce(Buffer.alloc(24, 7));
const header = new common.Header();
header.setChannelHeader(ch.serializeBinary());
header.setSignatureHeader(sh.serializeBinary());
const input = new peer.ChaincodeInput();
input.setArgsList([Buffer.from('put'), Buffer.from('k'), Buffer.from('v')]);
input.setIsInit(true);
const spec = new peer.ChaincodeSpec();
spec.setType(peer.ChaincodeSpec.Type.NODE);
spec.setChaincodeId(ccid);
spec.setInput(input);
emit('ChaincodeSpec', spec);
const cis = new peer.ChaincodeInvocationSpec();
cis.setChaincodeSpec(spec);
const ccpp = new peer.ChaincodeProposalPayload();
ccpp.setInput(cis.serializeBinary());
ccpp.getTransientmapMap().set('secret', Buffer.from('s'));
emit('ChaincodeProposalPayload', ccpp);
const proposal = new peer.Proposal();
proposal.setHeader(header.serializeBinary());
proposal.setPayload(ccpp.serializeBinary());
const signed = new peer.SignedProposal();
signed.setProposalBytes(proposal.serializeBinary());
signed.setSignature(Buffer.from([0x30, 0x44]));
emit('SignedProposal', signed);

const event = new peer.ChaincodeEvent();
event.setChaincodeId('mycc');
event.setTxId('abc123');
event.setEventName('Transfer');
event.setPayload(Buffer.from('ev'));
const msg = new peer.ChaincodeMessage();
msg.setType(peer.ChaincodeMessage.Type.TRANSACTION);
msg.setTimestamp(ts);
msg.setPayload(input.serializeBinary());
msg.setTxid('abc123');
msg.setProposal(signed);
msg.setChaincodeEvent(event);
msg.setChannelId('mychannel');
emit('ChaincodeMessage', msg);

const qm = new peer.QueryMetadata();
qm.setPagesize(30);
qm.setBookmark('r0030');
const range = new peer.GetStateByRange();
range.setStartkey('a');
range.setEndkey('z');
range.setMetadata(qm.serializeBinary());
emit('GetStateByRange', range);

const kv = new ledger.queryresult.KV();
kv.setNamespace('mycc');
kv.setKey('a');
kv.setValue(Buffer.from('1'));
const qrb = new peer.QueryResultBytes();
qrb.setResultbytes(kv.serializeBinary());
const qrm = new peer.QueryResponseMetadata();
qrm.setFetchedRecordsCount(1);
qrm.setBookmark('b');
const qr = new peer.QueryResponse();
qr.setResultsList([qrb]);
qr.setHasMore(true);
qr.setId('it-1');
qr.setMetadata(qrm.serializeBinary());
emit('QueryResponse', qr);

const km = new ledger.queryresult.KeyModification();
km.setTxId('abc123');
km.setValue(Buffer.from('v'));
km.setTimestamp(ts);
km.setIsDelete(true);
emit('KeyModification', km);

const smr = new peer.StateMetadataResult();
const sm = new peer.StateMetadata();
sm.setMetakey('VALIDATION_PARAMETER');
sm.setValue(Buffer.from('p'));
smr.setEntriesList([sm]);
emit('StateMetadataResult', smr);

const version = new kvrwset.Version();
version.setBlockNum(5);
version.setTxNum(2);
const read = new kvrwset.KVRead();
read.setKey('a');
read.setVersion(version);
const write = new kvrwset.KVWrite();
write.setKey('b');
write.setIsDelete(true);
const kvset = new kvrwset.KVRWSet();
kvset.setReadsList([read]);
kvset.setWritesList([write]);
const ns = new ledger.rwset.NsReadWriteSet();
ns.setNamespace('mycc');
ns.setRwset(kvset.serializeBinary());
const txrw = new ledger.rwset.TxReadWriteSet();
txrw.setDataModel(ledger.rwset.TxReadWriteSet.DataModel.KV);
txrw.setNsRwsetList([ns]);
emit('TxReadWriteSet', txrw);

const response = new peer.Response();
response.setStatus(500);
response.setMessage('boom');
response.setPayload(Buffer.from('p'));
const action = new peer.ChaincodeAction();
action.setResults(txrw.serializeBinary());
action.setEvents(event.serializeBinary());
action.setResponse(response);
action.setChaincodeId(ccid);
const prp = new peer.ProposalResponsePayload();
prp.setProposalHash(Buffer.alloc(32, 1));
prp.setExtension$(action.serializeBinary());
const endorsement = new peer.Endorsement();
endorsement.setEndorser(id.serializeBinary());
endorsement.setSignature(Buffer.from([0x30, 0x45]));
const pr = new peer.ProposalResponse();
pr.setVersion(1);
pr.setTimestamp(ts);
pr.setResponse(response);
pr.setPayload(prp.serializeBinary());
pr.setEndorsement(endorsement);
emit('ProposalResponse', pr);

for (const line of out) {
    console.log(JSON.stringify(line));
}
