# Low-level chaincode on Hyperledger's Python shim (PyPI fabric-chaincode-python), run as a
# chaincode server (chaincode-as-a-service) for tests/endorser_gateway.rs. The Python shim only
# runs as a server: the endorser dials it.
#
#   CHAINCODE_ID=<package id> CHAINCODE_SERVER_ADDRESS=HOST:PORT python chaincode.py
#
# TLS: CORE_TLS_CLIENT_KEY_PATH / CORE_TLS_CLIENT_CERT_PATH (the server's key and certificate, PEM
# files) and CORE_PEER_TLS_ROOTCERT_FILE (CA of the client certificates it requires). They are
# passed to server.start explicitly: fabric-chaincode-python 2.5.4's start() hands key=None on to
# the server, so the environment fallback inside it never applies.
#
# Functions match what e2e/clients/gateway.js calls: put, get, getput, fail, emit.
import os

from fabric_chaincode_python.fabric_shim import server
from fabric_chaincode_python.fabric_shim.interfaces import Chaincode
from fabric_chaincode_python.fabric_shim.response import error, success


class E2EChaincode(Chaincode):
    @staticmethod
    async def init(stub):
        return success(b"")

    @staticmethod
    async def invoke(stub):
        function, params = stub.get_function_and_parameters()
        if function == "put":
            await stub.put_state(params[0], params[1])
            return success("ok")
        if function == "get":
            value = await stub.get_state(params[0])
            return success(bytes(value or b""))
        if function == "getput":
            old = await stub.get_state(params[0])
            await stub.put_state(params[0], params[1])
            return success(bytes(old or b""))
        if function == "fail":
            return error(params[0] if params else "failed")
        if function == "emit":
            stub.set_event(params[0], params[1])
            return success("emitted")
        return error(f"unknown function {function}")


if __name__ == "__main__":
    server.start(
        E2EChaincode,
        key=os.getenv("CORE_TLS_CLIENT_KEY_PATH"),
        cert=os.getenv("CORE_TLS_CLIENT_CERT_PATH"),
        client_ca_certs=os.getenv("CORE_PEER_TLS_ROOTCERT_FILE"),
    )
