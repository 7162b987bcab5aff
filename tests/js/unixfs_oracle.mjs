// An independent implementation to check sensorcharts.cid against: npm's ipfs-unixfs-importer (the importer
// Pinata's documentation points to for predicting CIDs) and @ipld/car (a CAR reader). Called by tests/test_cid.py.
//
//   node unixfs_oracle.mjs import <folders.json>
//       folders.json: [{"cidVersion": 0|1, "files": {"a/b.png": "<base64>", ...}, "shardSplitStrategy"?}, ...]
//       -> [{"root": CID of the wrapping directory, "type": its UnixFS type ('directory' or
//            'hamt-sharded-directory'), "blocks": {CID: base64 of the block}}, ...]
//   node unixfs_oracle.mjs read-car <file.car>...
//       -> [{"version": 1, "roots": [CID], "blocks": [[CID, base64]] in CAR order, "hashes_ok": every block's
//            bytes hash to its CID}, ...]
// The settings are those of `ipfs add -r --cid-version=1` (Kubo: 256 KiB chunks, balanced DAG of at most 174
// links, raw leaves) or, for cidVersion 0, the importer's 'unixfs-v0-2015' profile (plain `ipfs add -r`).
import { readFileSync } from 'node:fs'
import { CarBufferReader } from '@ipld/car'
import { MemoryBlockstore } from 'blockstore-core'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { sha256 } from 'multiformats/hashes/sha2'

class RecordingBlockstore extends MemoryBlockstore {
  constructor () {
    super()
    this.blocks = new Map()
  }

  put (cid, bytes, options) {
    this.blocks.set(cid.toString(), Buffer.from(bytes).toString('base64'))
    return super.put(cid, bytes, options)
  }
}

async function importFolder (folder) {
  const entries = Object.entries(folder.files).map(([path, b64]) => ({
    path, content: Uint8Array.from(Buffer.from(b64, 'base64'))
  }))
  const common = { wrapWithDirectory: true, shardSplitThresholdBytes: 262144 }
  const options = folder.cidVersion === 0
    ? { ...common, profile: 'unixfs-v0-2015' }
    : {
        ...common,
        cidVersion: 1,
        rawLeaves: true,
        chunker: fixedSize({ chunkSize: 262144 }),
        layout: balanced({ maxChildrenPerNode: 174 }),
        shardSplitStrategy: folder.shardSplitStrategy ?? 'links-bytes'
      }
  const store = new RecordingBlockstore()
  let root = null
  let type = null
  for await (const entry of importer(entries, store, options)) {
    if (entry.path === '') {  // the wrapping directory comes last
      root = entry.cid.toString()
      type = entry.unixfs?.type ?? null
    }
  }
  if (root === null) throw new Error('the importer yielded no wrapping directory')
  return { root, type, blocks: Object.fromEntries(store.blocks) }
}

async function readCar (path) {
  const reader = CarBufferReader.fromBytes(readFileSync(path))
  const blocks = []
  let hashesOk = true
  for (const { cid, bytes } of reader.blocks()) {
    const digest = await sha256.digest(bytes)
    if (cid.multihash.code !== sha256.code || Buffer.compare(digest.digest, cid.multihash.digest) !== 0) {
      hashesOk = false
    }
    blocks.push([cid.toString(), Buffer.from(bytes).toString('base64')])
  }
  return { version: reader.version, roots: reader.getRoots().map(String), blocks, hashes_ok: hashesOk }
}

const [mode, ...paths] = process.argv.slice(2)
const result = mode === 'import'
  ? await Promise.all(JSON.parse(readFileSync(paths[0], 'utf8')).map(importFolder))
  : mode === 'read-car' ? await Promise.all(paths.map(readCar)) : null
if (result === null) throw new Error(`unknown mode ${mode}: 'import' or 'read-car'`)
process.stdout.write(JSON.stringify(result))
