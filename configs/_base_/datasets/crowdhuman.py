# CrowdHuman in MMDetection's layout (Images/ and annotation_{train,val}.odgt
# under the data root): what its datasets and metric set, for the CrowdHuman
# configs to put in place of COCO's with their data root and pipelines.
crowdhuman_train = dict(
    ann_file='annotation_train.odgt', data_prefix=dict(img='Images/'))
crowdhuman_val = dict(
    crowdhuman_train, ann_file='annotation_val.odgt', test_mode=True)
crowdhuman_metric = dict(type='CrowdHumanMetric', metric=['AP', 'MR', 'JI'])
