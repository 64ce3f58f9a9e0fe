//! Held images ([`ChunkStore::hold`]): what a replica keeps of another
//! node's vessel survives garbage collection and eviction, whatever image
//! list the host's retention passes, until its holder lets it go.

use protocol::membership::{PublicKey, Signature};
use protocol::snapshot::ChunkedImage;
use protocol::vessel::{
    Deployment, DeploymentBody, LogImage, Resume, VesselId, VesselImage, VESSEL_VERSION,
};

use super::*;

/// An image whose module is `chunks`, stored with them.
fn stored_image(store: &ChunkStore, seed: u8, chunks: &[Vec<u8>]) -> (Hash, Vec<Hash>) {
    let hashes: Vec<Hash> = chunks.iter().map(|c| store.put_chunk(c).unwrap()).collect();
    let img = VesselImage {
        version: VESSEL_VERSION,
        deployment: Deployment {
            body: DeploymentBody {
                version: VESSEL_VERSION,
                vessel: VesselId([seed; 8]),
                name: "held".into(),
                module_hash: Hash::of(&[seed]),
                args: vec![],
                env: vec![],
                volumes: vec![],
                mounts: vec![],
                ports: vec![],
                checkpoint_every_ms: None,
                replicas: None,
                durability: None,
                max_memory_bytes: None,
                restart: None,
            },
            user_key: PublicKey([0; 32]),
            signature: Signature([0; 64]),
        },
        epoch: 1,
        resume: Resume::Fresh,
        module: ChunkedImage {
            size_bytes: chunks.iter().map(|c| c.len() as u64).sum(),
            chunks: hashes.iter().copied().map(Some).collect(),
        },
        manifest: vec![],
        volumes: vec![],
        log: LogImage::default(),
        migrations: 0,
        run_ms: 0,
        hub: Default::default(),
        placement: Default::default(),
    };
    let (bytes, h) = img.encode_and_hash();
    store.put_image_doc(&bytes, true).unwrap();
    (h, hashes)
}

#[test]
fn a_held_image_and_its_chunks_outlive_collections_until_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let (old, old_chunks) = stored_image(&store, 1, &[vec![1; 100], vec![2; 100]]);
    store.hold("replica/01", Some(old));
    // The host's retention names nothing: the held image stays whole.
    store.retain_images(&[]).unwrap();
    assert!(old_chunks.iter().all(|h| store.has_chunk(h)));
    assert!(
        store.get_image_doc(&old).is_ok(),
        "the held image doc stays"
    );
    // A newer image replaces it: the older one's own chunks go at the next
    // collection, the chunk they share stays.
    let (new, new_chunks) = stored_image(&store, 2, &[vec![2; 100], vec![3; 100]]);
    store.hold("replica/01", Some(new));
    assert_eq!(store.held("replica/01"), Some(new));
    store.retain_images(&[]).unwrap();
    assert!(
        !store.has_chunk(&old_chunks[0]),
        "the older copy's chunk was let go"
    );
    assert!(new_chunks.iter().all(|h| store.has_chunk(h)));
    assert!(store.get_image_doc(&old).is_err());
    store.hold("replica/01", None);
    store.retain_images(&[]).unwrap();
    assert!(new_chunks.iter().all(|h| !store.has_chunk(h)));
}
