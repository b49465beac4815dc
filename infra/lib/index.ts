// kafka-esm's CDK constructs: the deployment (KafkaEsm) and mappings as event sources.
export * from './kafka-esm';
export * from './event-source';
export * from './kafka-esm-stack';
