'use strict';
// Low-level fabric-shim chaincode exercised by tests/stream_shim.rs.
const shim = require('fabric-shim');

const functions = {
    async put(stub, [key, value]) {
        await stub.putState(key, Buffer.from(value));
        return Buffer.from('ok');
    },
    async get(stub, [key]) {
        return await stub.getState(key);
    },
    // One read and one write: the benchmark's transaction.
    async getput(stub, [key, value]) {
        const old = await stub.getState(key);
        await stub.putState(key, Buffer.from(value));
        return old;
    },
    async del(stub, [key]) {
        await stub.deleteState(key);
        return Buffer.from('deleted');
    },
    async range(stub, [start, end]) {
        const iterator = await stub.getStateByRange(start, end);
        const keys = [];
        for (let res = await iterator.next(); !res.done; res = await iterator.next()) {
            keys.push(res.value.key);
        }
        await iterator.close();
        return Buffer.from(JSON.stringify(keys));
    },
    async history(stub, [key]) {
        const iterator = await stub.getHistoryForKey(key);
        const out = [];
        for (let res = await iterator.next(); !res.done; res = await iterator.next()) {
            out.push({ txId: res.value.txId, value: Buffer.from(res.value.value).toString(), isDelete: res.value.isDelete });
        }
        await iterator.close();
        return Buffer.from(JSON.stringify(out));
    },
    async emit(stub, [name, payload]) {
        stub.setEvent(name, Buffer.from(payload));
        return Buffer.from('emitted');
    },
    async whoami(stub) {
        return Buffer.from(stub.getCreator().mspid);
    },
    async callOther(stub, [chaincode, fn, ...args]) {
        const res = await stub.invokeChaincode(chaincode, [fn, ...args], stub.getChannelID());
        return Buffer.from(JSON.stringify({ status: res.status, payload: Buffer.from(res.payload).toString() }));
    },
};

class LowLevelChaincode {
    async Init(stub) {
        await stub.putState('shim-init', Buffer.from('done'));
        return shim.success(Buffer.from('initialized'));
    }

    async Invoke(stub) {
        const { fcn, params } = stub.getFunctionAndParameters();
        if (fcn === 'fail') {
            await stub.putState('failed-write', Buffer.from('must not survive'));
            return shim.error(params[0] || 'failed on purpose');
        }
        const fn = functions[fcn];
        if (!fn) {
            return shim.error(`unknown function ${fcn}`);
        }
        try {
            return shim.success(await fn(stub, params));
        } catch (err) {
            return shim.error(err.message);
        }
    }
}

shim.start(new LowLevelChaincode());
