'use strict';
// A pass-through npm registry for in-cluster chaincode builds in the tests. Pods of the kube kit have
// no route off the machine, so a build Job's `npm install --registry http://NODE_IP:PORT/` reaches the
// public registry through this process on the host (npm rewrites registry.npmjs.org tarball URLs to
// the configured registry). Nothing is cached or changed.
//
//   node npm-proxy.js HOST PORT      prints "listening HOST:PORT" once it accepts connections
const http = require('http');
const https = require('https');

const [host, port] = process.argv.slice(2);
const upstream = new URL(process.env.NPM_UPSTREAM || 'https://registry.npmjs.org/');

const server = http.createServer((req, res) => {
    const headers = {...req.headers, host: upstream.host};
    const forward = https.request(
        {host: upstream.hostname, port: upstream.port || 443, path: req.url, method: req.method, headers},
        (answer) => {
            res.writeHead(answer.statusCode, answer.headers);
            answer.pipe(res);
        },
    );
    forward.on('error', (err) => {
        res.writeHead(502, {'content-type': 'text/plain'});
        res.end(`npm proxy: ${err.message}\n`);
    });
    req.pipe(forward);
});
server.listen(Number(port), host, () => {
    const address = server.address();
    process.stdout.write(`listening ${address.address}:${address.port}\n`);
});
