'use strict';
// Contract-API chaincode exercised by tests/stream_shim.rs through the real fabric-contract-api.
const { Contract } = require('fabric-contract-api');

async function collect(iterator) {
    const keys = [];
    for (let res = await iterator.next(); !res.done; res = await iterator.next()) {
        keys.push(res.value.key);
    }
    await iterator.close();
    return keys;
}

class E2EContract extends Contract {
    constructor() {
        super('e2e');
    }

    async initLedger(ctx) {
        await ctx.stub.putState('init', Buffer.from('done'));
        return 'initialized';
    }

    async put(ctx, key, value) {
        await ctx.stub.putState(key, Buffer.from(value));
        return 'ok';
    }

    async putMany(ctx, prefix, count) {
        for (let i = 0; i < Number(count); i++) {
            await ctx.stub.putState(prefix + String(i).padStart(4, '0'), Buffer.from(String(i)));
        }
        return String(count);
    }

    // One read and one write: the benchmark's transaction.
    async getput(ctx, key, value) {
        const old = await ctx.stub.getState(key);
        await ctx.stub.putState(key, Buffer.from(value));
        return old.toString();
    }

    async get(ctx, key) {
        const value = await ctx.stub.getState(key);
        return value.toString();
    }

    async del(ctx, key) {
        await ctx.stub.deleteState(key);
        return 'deleted';
    }

    async range(ctx, start, end) {
        const keys = await collect(await ctx.stub.getStateByRange(start, end));
        return JSON.stringify(keys);
    }

    async rangePage(ctx, start, end, pageSize, bookmark) {
        const { iterator, metadata } = await ctx.stub.getStateByRangeWithPagination(start, end, Number(pageSize), bookmark);
        const keys = await collect(iterator);
        return JSON.stringify({ keys, bookmark: metadata.bookmark, fetched: metadata.fetchedRecordsCount });
    }

    async history(ctx, key) {
        const iterator = await ctx.stub.getHistoryForKey(key);
        const out = [];
        for (let res = await iterator.next(); !res.done; res = await iterator.next()) {
            out.push({ txId: res.value.txId, value: Buffer.from(res.value.value).toString(), isDelete: res.value.isDelete });
        }
        await iterator.close();
        return JSON.stringify(out);
    }

    // The contract API counts declared parameters, so no rest parameter here.
    async callOther(ctx, chaincode, fn, arg1, arg2) {
        const res = await ctx.stub.invokeChaincode(chaincode, [fn, arg1, arg2], ctx.stub.getChannelID());
        return JSON.stringify({ status: res.status, payload: Buffer.from(res.payload).toString() });
    }

    async callOtherOn(ctx, chaincode, channel, fn, arg1, arg2) {
        const res = await ctx.stub.invokeChaincode(chaincode, [fn, arg1, arg2], channel);
        return JSON.stringify({ status: res.status, payload: Buffer.from(res.payload).toString() });
    }

    async emit(ctx, name, payload) {
        ctx.stub.setEvent(name, Buffer.from(payload));
        return 'emitted';
    }

    async fail(ctx, message) {
        await ctx.stub.putState('failed-write', Buffer.from('must not survive'));
        throw new Error(message);
    }

    async richQuery(ctx, query) {
        const iterator = await ctx.stub.getQueryResult(query);
        return JSON.stringify(await collect(iterator));
    }

    async whoami(ctx) {
        return JSON.stringify({ mspid: ctx.clientIdentity.getMSPID(), id: ctx.clientIdentity.getID() });
    }

    async setMeta(ctx, key, name, value) {
        await ctx.stub.setStateValidationParameter(key, Buffer.from(value));
        return 'ok';
    }

    async getMeta(ctx, key) {
        const value = await ctx.stub.getStateValidationParameter(key);
        return Buffer.from(value).toString();
    }

    // Private data: the value comes from the transient map (key "value"), so it is never an
    // argument of the transaction.
    async putPrivate(ctx, collection, key) {
        const value = ctx.stub.getTransient().get('value');
        if (!value) {
            throw new Error('transient field "value" is required');
        }
        await ctx.stub.putPrivateData(collection, key, value);
        return 'stored';
    }

    async getPrivate(ctx, collection, key) {
        return Buffer.from(await ctx.stub.getPrivateData(collection, key)).toString();
    }

    async getPrivateHash(ctx, collection, key) {
        return Buffer.from(await ctx.stub.getPrivateDataHash(collection, key)).toString('hex');
    }

    async delPrivate(ctx, collection, key) {
        await ctx.stub.deletePrivateData(collection, key);
        return 'deleted';
    }

    async purgePrivate(ctx, collection, key) {
        await ctx.stub.purgePrivateData(collection, key);
        return 'purged';
    }

    async rangePrivate(ctx, collection, start, end) {
        // fabric-shim resolves this one to {iterator}, unlike getStateByRange.
        const res = await ctx.stub.getPrivateDataByRange(collection, start, end);
        const keys = await collect(res.iterator ?? res);
        return JSON.stringify(keys);
    }

    // A value of `bytes` bytes: for the chaincode stream's message limit.
    async putSized(ctx, key, bytes) {
        await ctx.stub.putState(key, Buffer.alloc(Number(bytes), 'x'));
        return 'stored';
    }

    // Blocks the event loop (a chaincode stuck in a loop): nothing else on this instance runs.
    async spin(ctx, ms) {
        const end = Date.now() + Number(ms);
        while (Date.now() < end) { /* busy */ }
        return 'spun';
    }

    async sleep(ctx, ms) {
        await ctx.stub.putState('slept', Buffer.from('yes'));
        await new Promise((resolve) => setTimeout(resolve, Number(ms)));
        return 'awake';
    }
}

module.exports.contracts = [E2EContract];
