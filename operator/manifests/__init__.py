"""Pure manifest builders: CR (name, uid, spec) in, Kubernetes manifests (plain dicts) out.

No API calls and no clock here, so every manifest is unit-tested and a handler that runs twice
builds the same objects (deterministic names: the second create is a 409, not a duplicate).
Every child carries an owner reference to its DistilledModel, so deleting the CR deletes them
(the artifacts claim excepted: it is shared).

* :mod:`.common`: the owner, default images, children's names, labels, metadata and pod security;
* :mod:`.claims`: the artifacts claim, its hostPath PersistentVolume, the prepare-storage init container;
* :mod:`.distill`: the spec ConfigMap, distillation and labelling Jobs, the teacher init container;
* :mod:`.teacher_service`: the teacher Deployment and Service (escalation);
* :mod:`.daemonset`: the classifier DaemonSet and its metrics Service;
* :mod:`.apitoken`: the Secret of the APIs' bearer token and its mount;
* :mod:`.network_policy`: the teacher's NetworkPolicy (only the model's classifiers reach its API).
"""
